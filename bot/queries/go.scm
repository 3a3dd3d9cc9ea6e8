(comment) @doc

(function_declaration name: (identifier) @name body: (block)? @body) @definition.function

(method_declaration name: (field_identifier) @name body: (block)? @body) @definition.function

(type_spec name: (type_identifier) @name
  type: [(struct_type (field_declaration_list) @body) (interface_type) @body (_)]) @definition.class

(type_alias name: (type_identifier) @name) @definition.class

(const_spec name: (identifier) @name) @definition.variable

(var_spec name: (identifier) @name) @definition.variable

(import_spec path: (interpreted_string_literal) @import)
