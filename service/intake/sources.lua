-- Admits sources up to a cap, for every api replica at once (one key, one slot).
-- KEYS[1]: set of the sources admitted so far; ARGV[1]: the cap; ARGV[2..]: sources this request names.
-- Returns the sources refused: not admitted before, and the set already holding the cap.
local cap = tonumber(ARGV[1])
local count = redis.call('SCARD', KEYS[1])
local refused = {}
for i = 2, #ARGV do
  local source = ARGV[i]
  if redis.call('SISMEMBER', KEYS[1], source) == 0 then
    if count < cap then
      redis.call('SADD', KEYS[1], source)
      count = count + 1
    else
      refused[#refused + 1] = source
    end
  end
end
return refused
