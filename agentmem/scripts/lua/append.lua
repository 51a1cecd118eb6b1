
--- @include "lib/check_args"

--- @include "lib/append_body"
