-- One partition's page of a records index, newest first (service/records/query.py merges the partitions).
-- KEYS[1]: the index (rec:idx:<status>[:<source>]). ARGV: prefix, max time (the cursor's or until), cursor
-- time ('' = none), cursor id, min time (since), min score ('' = none), limit, scan budget.
-- Returns {done (1: the index has nothing further), last scanned time, last scanned id, {id, time, HGETALL}...}.
-- Index entries whose record expired are removed on the way (the lazy half of retention).
local idx, P = KEYS[1], ARGV[1]
local max_t, cursor_t, cursor_id, min_t = ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5]
local min_score = tonumber(ARGV[6])
local limit, budget = tonumber(ARGV[7]), tonumber(ARGV[8])
local out, scanned, offset, done = {}, 0, 0, 0
local last_t, last_id = '', ''
local PAGE = 200
while true do
  local page = redis.call('ZREVRANGEBYSCORE', idx, max_t, min_t, 'WITHSCORES', 'LIMIT', offset, PAGE)
  local stop = false
  for j = 1, #page, 2 do
    local id, t = page[j], page[j + 1]
    offset = offset + 1
    -- ties share a time; ZREVRANGEBYSCORE orders them by id, descending: skip those at or above the cursor
    if not (cursor_t and tonumber(t) == cursor_t and id >= cursor_id) then
      scanned = scanned + 1
      last_t, last_id = t, id
      local rk = P .. 'rec:' .. id
      if redis.call('EXISTS', rk) == 0 then
        redis.call('ZREM', idx, id)
        offset = offset - 1
      elseif min_score == nil or (tonumber(redis.call('HGET', rk, 'score')) or -1) >= min_score then
        out[#out + 1] = {id, t, redis.call('HGETALL', rk)}
      end
      if #out >= limit or scanned >= budget then stop = true break end
    end
  end
  if stop then break end
  if #page < 2 * PAGE then done = 1 break end
end
return {done, last_t, last_id, out}
