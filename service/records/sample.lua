-- Keep windows judged normal in each source's bounded sample (a reservoir, Vitter's algorithm R).
-- KEYS[1]: any key of the partition's slot (the sources' keys are built from the prefix, all in that slot).
-- ARGV[1]: prefix ("logllm:{p<k>}:"), ARGV[2]: N (windows kept per source), ARGV[3]: MessagePack array of
-- windows [source, window id, closed_at, u, label, [elements...]]; u in [0, 1) decides a window past the first N
-- (a hash of its id: the same window always gets the same decision).
-- Per source S: hash sample:S (seen = windows offered so far; cap = the N the slots were kept for;
-- id:<i>, at:<i>, label:<i> = slot i's window) and one list sample:S:w:<i> per slot (its lines as buffered).
-- Returns the number of windows kept.
local P, N = ARGV[1], tonumber(ARGV[2])
local windows = cmsgpack.unpack(ARGV[3])
local kept = 0
for _, w in ipairs(windows) do
  local meta = P .. 'sample:' .. w[1]
  local cap = tonumber(redis.call('HGET', meta, 'cap') or N)
  if cap > N then -- N lowered since: the slots past it go, and the reservoir restarts from the N that stay
    for i = N, cap - 1 do
      redis.call('DEL', meta .. ':w:' .. i)
      redis.call('HDEL', meta, 'id:' .. i, 'at:' .. i, 'label:' .. i)
    end
    redis.call('HSET', meta, 'seen', math.min(tonumber(redis.call('HGET', meta, 'seen') or 0), N))
  end
  redis.call('HSET', meta, 'cap', N)
  local seen = redis.call('HINCRBY', meta, 'seen', 1)
  local slot = seen - 1
  if seen > N then
    slot = math.floor(tonumber(w[4]) * seen)
  end
  if slot < N then
    local key = meta .. ':w:' .. slot
    redis.call('DEL', key)
    local lines = w[6]
    for i = 1, #lines, 1000 do
      redis.call('RPUSH', key, unpack(lines, i, math.min(i + 999, #lines)))
    end
    redis.call('HSET', meta, 'id:' .. slot, w[2], 'at:' .. slot, w[3], 'label:' .. slot, w[5])
    kept = kept + 1
  end
end
return kept
