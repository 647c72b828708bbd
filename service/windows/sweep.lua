-- Close the windows of one partition whose last line is older than the idle timeout, by the Redis clock; the
-- selection and the close are one atomic step, so a line that arrives meanwhile waits for the next sweep.
-- ARGV: prefix, idle_timeout_s, limit. Returns {keys examined, ids closed...}; fewer than limit examined: done.
local cutoff = NOW - tonumber(ARGV[2])
local keys = redis.call('ZRANGEBYSCORE', LASTSEEN, '-inf', string.format('%.6f', cutoff), 'LIMIT', 0, tonumber(ARGV[3]))
local result = {#keys}
for _, key in ipairs(keys) do
  local id = close_window(key, 'idle')
  if id then result[#result + 1] = id end
end
return result
