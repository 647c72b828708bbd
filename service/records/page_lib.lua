-- Walk one partition's zset index newest first, from a cursor, for a page (query.py's merge_pages merges them).
-- visit(member, time) returns the row to keep, false to skip it, or nil when the member's hash is gone: the
-- member is then removed from the index (the lazy half of retention). Ties on time are ordered by member,
-- descending, as ZREVRANGEBYSCORE gives them; those at or above the cursor are skipped.
-- Returns {done (1: nothing further), last scanned time, last scanned member, rows}.
local function walk_index(idx, max_t, cursor_t, cursor_m, min_t, limit, budget, visit)
  local out, scanned, offset, done = {}, 0, 0, 0
  local last_t, last_m = '', ''
  local PAGE = 200
  while true do
    local page = redis.call('ZREVRANGEBYSCORE', idx, max_t, min_t, 'WITHSCORES', 'LIMIT', offset, PAGE)
    local stop = false
    for j = 1, #page, 2 do
      local m, t = page[j], page[j + 1]
      offset = offset + 1
      if not (cursor_t and tonumber(t) == cursor_t and m >= cursor_m) then
        scanned = scanned + 1
        last_t, last_m = t, m
        local row = visit(m, t)
        if row == nil then
          redis.call('ZREM', idx, m)
          offset = offset - 1
        elseif row then
          out[#out + 1] = row
        end
        if #out >= limit or scanned >= budget then stop = true break end
      end
    end
    if stop then break end
    if #page < 2 * PAGE then done = 1 break end
  end
  return {done, last_t, last_m, out}
end
