-- Close windows of one partition: explicitly (ARGV[4] = '') or when idle (ARGV[4] = cutoff: close only keys
-- whose last line is still at or before it, so a line that arrived since the sweep looked keeps it open).
-- ARGV: prefix, now, reason, cutoff, keys...; returns the ids of the windows closed.
local reason = ARGV[3]
local cutoff = tonumber(ARGV[4])
local closed = {}
for i = 5, #ARGV do
  local key = ARGV[i]
  local seen = tonumber(redis.call('ZSCORE', LASTSEEN, key))
  if cutoff == nil or (seen ~= nil and seen <= cutoff) then
    local id = close_window(key, reason)
    if id then closed[#closed + 1] = id end
  end
end
return closed
