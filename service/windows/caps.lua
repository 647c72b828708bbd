-- The caps' pre-check of one partition, before a request writes anything (WindowStore._check_caps).
-- ARGV: prefix, open_share, how many distinct window keys the request adds lines to in this partition, then
-- those keys as one JSON array. Returns {ready-queue depth, open windows, how many of the keys have no open
-- window}; that count is -1 (not counted) when the cap holds even if all of them were new.
local open_share, count = tonumber(ARGV[2]), tonumber(ARGV[3])
local depth = redis.call('XLEN', STREAM)
local open = tonumber(redis.call('GET', OPEN)) or 0
if open + count <= open_share then return {depth, open, -1} end
local new = 0
for _, key in ipairs(cjson.decode(ARGV[4])) do
  if redis.call('HGET', meta_key(key), 'open') ~= '1' then new = new + 1 end
end
return {depth, open, new}
