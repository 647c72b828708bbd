-- One partition's page of a records index, newest first (service/records/query.py merges the partitions).
-- KEYS[1]: the index (rec:idx:<status>[:<source>]). ARGV: prefix, max time (the cursor's or until), cursor
-- time ('' = none), cursor id, min time (since), min score ('' = none), limit, scan budget.
-- Returns {done (1: the index has nothing further), last scanned time, last scanned id, {id, time, HGETALL}...}.
-- Index entries whose record expired are removed on the way (page_lib.lua, prepended).
local P = ARGV[1]
local min_score = tonumber(ARGV[6])
return walk_index(KEYS[1], ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5], tonumber(ARGV[7]), tonumber(ARGV[8]),
  function(id, t)
    local rk = P .. 'rec:' .. id
    if redis.call('EXISTS', rk) == 0 then return nil end
    if min_score == nil or (tonumber(redis.call('HGET', rk, 'score')) or -1) >= min_score then
      return {id, t, redis.call('HGETALL', rk)}
    end
    return false
  end)
