(comment) @doc

(function_declaration name: (identifier) @name body: (statement_block) @body) @definition.function

(generator_function_declaration name: (identifier) @name body: (statement_block) @body) @definition.function

(variable_declarator name: (identifier) @name
  value: [
    (arrow_function body: (_) @body)
    (function_expression body: (statement_block) @body)
  ]) @definition.function

(class_declaration name: (identifier) @name body: (class_body) @body) @definition.class

(method_definition name: (_) @name body: (statement_block) @body) @definition.method

(field_definition property: (_) @name
  value: [(arrow_function body: (_) @body) (function_expression body: (_) @body)]) @definition.method

(program (lexical_declaration (variable_declarator name: (identifier) @name
  value: [(string) (number) (template_string) (object) (array) (call_expression)]) ) @definition.variable)

(program (export_statement (lexical_declaration (variable_declarator name: (identifier) @name
  value: [(string) (number) (template_string) (object) (array) (call_expression)]) ) @definition.variable))

(import_statement source: (string (string_fragment) @import))

(export_statement source: (string (string_fragment) @import))

(call_expression function: (import) arguments: (arguments (string (string_fragment) @import)))

(call_expression function: (identifier) @_require arguments: (arguments (string (string_fragment) @import))
  (#eq? @_require "require"))
