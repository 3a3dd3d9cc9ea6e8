(comment) @doc

(function_definition
  declarator: [
    (function_declarator declarator: (identifier) @name)
    (pointer_declarator declarator: (function_declarator declarator: (identifier) @name))
  ]
  body: (compound_statement) @body) @definition.function

(translation_unit (declaration
  declarator: [
    (function_declarator declarator: (identifier) @name)
    (pointer_declarator declarator: (function_declarator declarator: (identifier) @name))
  ]) @definition.function)

(struct_specifier name: (type_identifier) @name body: (field_declaration_list) @body) @definition.class

(union_specifier name: (type_identifier) @name body: (field_declaration_list) @body) @definition.class

(enum_specifier name: (type_identifier) @name body: (enumerator_list) @body) @definition.class

(type_definition
  type: [(struct_specifier !name body: (_) @body) (union_specifier !name body: (_) @body) (enum_specifier !name body: (_) @body)]
  declarator: (type_identifier) @name) @definition.class

(preproc_function_def name: (identifier) @name) @definition.function

(preproc_def name: (identifier) @name) @definition.variable

(preproc_include path: (string_literal (string_content) @import.relative))
