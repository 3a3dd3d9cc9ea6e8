(line_comment) @doc
(block_comment) @doc
(attribute_item) @attribute

(function_item name: (identifier) @name body: (block) @body) @definition.function

(function_signature_item name: (identifier) @name) @definition.function

(struct_item name: (type_identifier) @name body: (_)? @body) @definition.class

(enum_item name: (type_identifier) @name body: (enum_variant_list) @body) @definition.class

(union_item name: (type_identifier) @name body: (_) @body) @definition.class

(trait_item name: (type_identifier) @name body: (declaration_list) @body) @definition.class

(impl_item
  type: [
    (type_identifier) @name
    (generic_type type: (type_identifier) @name)
    (scoped_type_identifier name: (type_identifier) @name)
    (generic_type type: (scoped_type_identifier name: (type_identifier) @name))
  ]
  body: (declaration_list) @body) @definition.class

(mod_item name: (identifier) @name body: (declaration_list) @body) @definition.class

(type_item name: (type_identifier) @name) @definition.class

(macro_definition name: (identifier) @name) @definition.function

(const_item name: (identifier) @name) @definition.variable

(static_item name: (identifier) @name) @definition.variable

(use_declaration argument: (_) @import)

(mod_item name: (identifier) @import.relative !body)
