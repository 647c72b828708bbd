-- Write verdicts, drop the scored lines and ack, per window, atomically: a crash before this script means a
-- re-score, never a loss; a second run for the same window (re-score after a reclaim) writes no second verdict.
-- Label 'failed' is the dead-letter path: no score, the error is kept, and the lines are renamed to
-- failed:<id> (same TTL) for inspection instead of being dropped. scored_at is the Redis clock.
-- ARGV: prefix, group, ttl, then per window: entry id, window id, window key, label, score, threshold,
-- n_lines, n_scored, model_version, closed_at, error, record (JSON or ''; service/records/records_lib.lua),
-- extra verdict fields (JSON object of strings, or ''; e.g. the novelty reason of service/patterns).
-- Returns the window ids whose verdict this call wrote.
local group = ARGV[2]
local ttl = tonumber(ARGV[3])
local written = {}
for i = 4, #ARGV, 13 do
  local entry, id, key, label = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local verdict = P .. 'verdict:' .. id
  if redis.call('EXISTS', verdict) == 0 then
    redis.call('HSET', verdict, 'label', label, 'n_lines', ARGV[i + 6], 'model_version', ARGV[i + 8],
      'closed_at', ARGV[i + 9], 'scored_at', NOW_TEXT)
    if label == 'failed' then
      redis.call('HSET', verdict, 'error', ARGV[i + 10])
    else
      redis.call('HSET', verdict, 'score', ARGV[i + 4], 'threshold', ARGV[i + 5], 'n_scored', ARGV[i + 7])
    end
    if ARGV[i + 12] ~= '' then
      for field, value in pairs(cjson.decode(ARGV[i + 12])) do redis.call('HSET', verdict, field, value) end
    end
    redis.call('EXPIRE', verdict, ttl)
    written[#written + 1] = id
    write_record(id, {label, ARGV[i + 4], ARGV[i + 5], ARGV[i + 6], ARGV[i + 8], ARGV[i + 9], NOW_TEXT,
      ARGV[i + 10]}, ARGV[i + 11])
  end
  if label == 'failed' and redis.call('EXISTS', closed_key(id)) == 1 then
    redis.call('RENAME', closed_key(id), P .. 'failed:' .. id)
    redis.call('EXPIRE', P .. 'failed:' .. id, ttl)
  else
    redis.call('DEL', closed_key(id))
  end
  redis.call('HDEL', P .. 'attempts', id)
  redis.call('XACK', STREAM, group, entry)
  redis.call('XDEL', STREAM, entry)
  -- a session's meta (window numbering) outlives its newest verdict, then goes (windows_lib's
  -- next_after_records numbers a returning session after its kept records); a fixed key's meta (its source's
  -- line index, one small hash per source) stays, so a source that pauses longer never reuses a record's id
  local meta = meta_key(key)
  local f = redis.call('HMGET', meta, 'open', 'mode')
  if f[1] ~= '1' and f[2] ~= 'f' then redis.call('EXPIRE', meta, ttl) end
end
return written
