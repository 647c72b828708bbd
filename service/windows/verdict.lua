-- The verdict of one window (HGETALL pairs), 'pending' while it is open or awaits the model, or nil.
-- ARGV: prefix, window id, window key the id would belong to, 'session'|'fixed' (how the key was derived).
local id, key, kind = ARGV[2], ARGV[3], ARGV[4]
local found = redis.call('HGETALL', P .. 'verdict:' .. id)
if #found > 0 then return found end
if redis.call('EXISTS', closed_key(id)) == 1 then return 'pending' end
local f = redis.call('HMGET', meta_key(key), 'open', 'mode', 'n', 'start', 'next', 'covered')
if f[1] ~= '1' then return false end
if kind == 'session' and f[2] == 's' then
  local n = tonumber(f[3]) or next_after_records(key)
  if (n == 0 and id == key) or (n > 0 and id == key .. '#' .. n) then return 'pending' end
elseif kind == 'fixed' and f[2] == 'f' then
  if id == key .. ':' .. f[4] and (tonumber(f[5]) or 0) > (tonumber(f[6]) or 0) then return 'pending' end
end
return false
