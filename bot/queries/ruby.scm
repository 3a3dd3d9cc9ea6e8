(comment) @doc

(method name: (_) @name body: (_)? @body) @definition.function

(singleton_method name: (_) @name body: (_)? @body) @definition.function

(class name: (_) @name body: (_)? @body) @definition.class

(module name: (_) @name body: (_)? @body) @definition.class

(call method: (identifier) @_require arguments: (argument_list (string (string_content) @import))
  (#eq? @_require "require"))

(call method: (identifier) @_require arguments: (argument_list (string (string_content) @import.relative))
  (#eq? @_require "require_relative"))
