-- Remove the consumers of group ARGV[1] on stream KEYS[1] that have nothing pending and have not read for
-- ARGV[2] ms, except ARGV[3] (the caller). Check and removal are one script, so a consumer that reads new
-- entries in between is never removed with them pending (XGROUP DELCONSUMER drops a consumer's pending list).
-- Returns the names removed.
local dropped = {}
local min_idle = tonumber(ARGV[2])
for _, consumer in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local f = {}
  for i = 1, #consumer, 2 do f[consumer[i]] = consumer[i + 1] end
  if f['name'] ~= ARGV[3] and tonumber(f['pending']) == 0 and tonumber(f['idle']) >= min_idle then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], f['name'])
    dropped[#dropped + 1] = f['name']
  end
end
return dropped
