-- Acknowledge and delete ready-queue entries whose lines are gone, so none stays pending forever.
-- ARGV: prefix, group, then (entry id, window id) pairs. Returns one reason per pair: 'already_scored' (a
-- verdict exists: the entry is a leftover), 'lines_missing' (no verdict either), or '' (the lines are there:
-- not dropped).
local group = ARGV[2]
local reasons = {}
for i = 3, #ARGV, 2 do
  local entry, id = ARGV[i], ARGV[i + 1]
  local reason = ''
  if redis.call('EXISTS', closed_key(id)) == 0 then
    reason = 'lines_missing'
    if redis.call('EXISTS', P .. 'verdict:' .. id) == 1 then reason = 'already_scored' end
    redis.call('XACK', STREAM, group, entry)
    redis.call('XDEL', STREAM, entry)
    redis.call('HDEL', P .. 'attempts', id)
  end
  reasons[#reasons + 1] = reason
end
return reasons
