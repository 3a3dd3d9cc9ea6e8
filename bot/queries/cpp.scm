(comment) @doc

(function_definition
  declarator: [
    (function_declarator declarator: [(identifier) (field_identifier) (destructor_name) (operator_name)] @name)
    (function_declarator declarator: (qualified_identifier name: (_) @name))
    (pointer_declarator declarator: (function_declarator declarator: [(identifier) (field_identifier)] @name))
    (reference_declarator (function_declarator declarator: [(identifier) (field_identifier)] @name))
  ]
  body: (compound_statement) @body) @definition.function

(field_declaration declarator: (function_declarator declarator: [(field_identifier) (destructor_name) (operator_name)] @name)) @definition.method

(declaration declarator: (function_declarator declarator: [(identifier) (qualified_identifier)] @name)) @definition.function

(class_specifier name: (type_identifier) @name body: (field_declaration_list) @body) @definition.class

(struct_specifier name: (type_identifier) @name body: (field_declaration_list) @body) @definition.class

(union_specifier name: (type_identifier) @name body: (field_declaration_list) @body) @definition.class

(enum_specifier name: (type_identifier) @name body: (enumerator_list) @body) @definition.class

(template_declaration (class_specifier name: (type_identifier) @name body: (field_declaration_list) @body)) @definition.class

(alias_declaration name: (type_identifier) @name) @definition.class

(preproc_function_def name: (identifier) @name) @definition.function

(preproc_def name: (identifier) @name) @definition.variable

(preproc_include path: (string_literal (string_content) @import.relative))
