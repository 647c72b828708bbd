-- Write verdicts, drop the scored lines and ack, per window, atomically: a crash before this script means a
-- re-score, never a loss; a second run for the same window (re-score after a reclaim) writes no second verdict.
-- ARGV: prefix, now, group, ttl, then per window: entry id, window id, window key, label, score, threshold,
-- n_lines, model_version, closed_at, scored_at. Returns the window ids whose verdict this call wrote.
local group = ARGV[3]
local ttl = tonumber(ARGV[4])
local written = {}
for i = 5, #ARGV, 10 do
  local entry, id, key = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local verdict = P .. 'verdict:' .. id
  if redis.call('EXISTS', verdict) == 0 then
    redis.call('HSET', verdict, 'label', ARGV[i + 3], 'score', ARGV[i + 4], 'threshold', ARGV[i + 5],
      'n_lines', ARGV[i + 6], 'model_version', ARGV[i + 7], 'closed_at', ARGV[i + 8], 'scored_at', ARGV[i + 9])
    redis.call('EXPIRE', verdict, ttl)
    written[#written + 1] = id
  end
  redis.call('DEL', closed_key(id))
  redis.call('XACK', STREAM, group, entry)
  redis.call('XDEL', STREAM, entry)
  -- the meta (window numbering) outlives the session's newest verdict, then goes
  local meta = meta_key(key)
  if redis.call('HGET', meta, 'open') ~= '1' then redis.call('EXPIRE', meta, ttl) end
end
return written
