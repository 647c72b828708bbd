-- Store a label on a record (the last label wins; its time is kept) and index it for GET /feedback.
-- KEYS[1]: rec:<id>. ARGV: prefix, id, label, note ('' = none), time. Returns the record (HGETALL) or nil.
local rk, P = KEYS[1], ARGV[1]
if redis.call('EXISTS', rk) == 0 then return false end
redis.call('HSET', rk, 'feedback_label', ARGV[3], 'feedback_at', ARGV[5])
if ARGV[4] ~= '' then redis.call('HSET', rk, 'feedback_note', ARGV[4]) else redis.call('HDEL', rk, 'feedback_note') end
redis.call('ZADD', P .. 'rec:idx:feedback', ARGV[5], ARGV[2])
return redis.call('HGETALL', rk)
