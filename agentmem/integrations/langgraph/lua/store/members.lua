--- KEYS: index. ARGV: min, max (ZRANGEBYLEX bounds), count. Members in lex order.

--- @include "lib/int_text"


local bad = int_text(ARGV[3], 1, MAX_EXACT, 'count')
if bad then return bad end
return redis.call('ZRANGEBYLEX', KEYS[1], ARGV[1], ARGV[2], 'LIMIT', 0, ARGV[3])
