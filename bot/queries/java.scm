(line_comment) @doc
(block_comment) @doc

(class_declaration name: (identifier) @name body: (class_body) @body) @definition.class

(interface_declaration name: (identifier) @name body: (interface_body) @body) @definition.class

(enum_declaration name: (identifier) @name body: (enum_body) @body) @definition.class

(record_declaration name: (identifier) @name body: (class_body) @body) @definition.class

(annotation_type_declaration name: (identifier) @name body: (annotation_type_body) @body) @definition.class

(method_declaration name: (identifier) @name body: (block)? @body) @definition.method

(constructor_declaration name: (identifier) @name body: (constructor_body) @body) @definition.method

(import_declaration) @import
