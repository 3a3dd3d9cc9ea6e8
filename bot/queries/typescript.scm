(comment) @doc

(function_declaration name: (identifier) @name body: (statement_block) @body) @definition.function

(generator_function_declaration name: (identifier) @name body: (statement_block) @body) @definition.function

(function_signature name: (identifier) @name) @definition.function

(variable_declarator name: (identifier) @name
  value: [
    (arrow_function body: (_) @body)
    (function_expression body: (statement_block) @body)
  ]) @definition.function

(class_declaration name: (type_identifier) @name body: (class_body) @body) @definition.class

(abstract_class_declaration name: (type_identifier) @name body: (class_body) @body) @definition.class

(interface_declaration name: (type_identifier) @name body: (interface_body) @body) @definition.class

(type_alias_declaration name: (type_identifier) @name value: (_) @body) @definition.class

(enum_declaration name: (identifier) @name body: (enum_body) @body) @definition.class

(internal_module name: (_) @name body: (statement_block) @body) @definition.class

(method_definition name: (_) @name body: (statement_block) @body) @definition.method

(abstract_method_signature name: (_) @name) @definition.method

(public_field_definition name: (_) @name
  value: [(arrow_function body: (_) @body) (function_expression body: (_) @body)]) @definition.method

(program (lexical_declaration (variable_declarator name: (identifier) @name
  value: [(string) (number) (template_string) (object) (array) (as_expression) (call_expression)]) ) @definition.variable)

(program (export_statement (lexical_declaration (variable_declarator name: (identifier) @name
  value: [(string) (number) (template_string) (object) (array) (as_expression) (call_expression)]) ) @definition.variable))

(import_statement source: (string (string_fragment) @import))

(export_statement source: (string (string_fragment) @import))

(call_expression function: (import) arguments: (arguments (string (string_fragment) @import)))

(call_expression function: (identifier) @_require arguments: (arguments (string (string_fragment) @import))
  (#eq? @_require "require"))
