(comment) @doc

(class_declaration name: (identifier) @name body: (declaration_list) @body) @definition.class

(struct_declaration name: (identifier) @name body: (declaration_list) @body) @definition.class

(interface_declaration name: (identifier) @name body: (declaration_list) @body) @definition.class

(record_declaration name: (identifier) @name body: (declaration_list)? @body) @definition.class

(enum_declaration name: (identifier) @name body: (enum_member_declaration_list) @body) @definition.class

(method_declaration name: (identifier) @name body: (block)? @body) @definition.method

(constructor_declaration name: (identifier) @name body: (block) @body) @definition.method

(property_declaration name: (identifier) @name accessors: (accessor_list) @body) @definition.method
