-- Close the open windows of the given keys of one partition (explicit close).
-- ARGV: prefix, reason, keys...; returns the ids of the windows closed.
local reason = ARGV[2]
local closed = {}
for i = 3, #ARGV do
  local id = close_window(ARGV[i], reason)
  if id then closed[#closed + 1] = id end
end
return closed
