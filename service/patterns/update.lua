-- Count one scoring batch's templates per source, remember an example line and the windows that held each,
-- mark the ones learned, and trim each source to its cap. ARGV: prefix, JSON {"cap", "recent", "sources":
-- {source: [{"id", "t" (template), "n" (occurrences), "ex" (example line), "vocab", "learn" ('' or how),
-- "w" (window ids)}]}, "stats"?: {source: {"l" lines, "w" windows, "k" lines with a template the vocabulary
-- knows or -1}}, "coverage"?: {"recent", "min_lines", "below"}}. n = 0 only marks (a learn). Returns {source,
-- number of templates new to it, coverage ('' without one), 1 when this call first found it under "below", ...}.
local req = cjson.decode(ARGV[2])
local cap, recent = tonumber(req.cap), tonumber(req.recent)
local out = {}

-- The source's counters in pat:S:meta: lines, windows; the coverage reads about "recent" latest lines (older
-- ones fade out in proportion), and the first call to find it judged and under "below" sets cov_warned.
local function count_lines(source)
  local stats = req.stats and req.stats[source]
  if not stats then return '', 0 end
  local meta = source_base(source) .. 'meta'
  redis.call('HINCRBY', meta, 'lines', stats.l)
  redis.call('HINCRBY', meta, 'windows', stats.w)
  if stats.k < 0 then return '', 0 end
  local lines = (tonumber(redis.call('HGET', meta, 'cov_lines')) or 0) + stats.l
  local known = (tonumber(redis.call('HGET', meta, 'cov_known')) or 0) + stats.k
  local keep = tonumber(req.coverage.recent)
  if lines > keep then
    known = known * keep / lines
    lines = keep
  end
  redis.call('HSET', meta, 'cov_lines', string.format('%.6f', lines), 'cov_known', string.format('%.6f', known))
  if lines <= 0 then return '', 0 end
  local warn = 0
  local below = tonumber(req.coverage.below)
  if lines >= tonumber(req.coverage.min_lines) and known / lines < below then
    warn = redis.call('HSETNX', meta, 'cov_warned', NOW_TEXT)
  end
  return string.format('%.6f', known / lines), warn
end

for source, templates in pairs(req.sources) do
  register_source(source)
  local base = source_base(source)
  local new = 0
  for _, t in ipairs(templates) do
    local key = base .. 't:' .. t.id
    if redis.call('EXISTS', key) == 0 then
      local member = source .. ':' .. t.id
      redis.call('HSET', key, 'id', t.id, 'source', source, 'template', t.t, 'count', 0, 'first_seen', NOW_TEXT,
        'example', t.ex, 'vocab', t.vocab)
      redis.call('ZADD', base .. 'rank', 0, t.id)
      redis.call('ZADD', base .. 'seen', NOW, member)
      redis.call('ZADD', P .. 'pat:all', NOW, member)
      new = new + 1
    end
    if t.n > 0 then
      redis.call('HSET', key, 'last_seen', NOW_TEXT)
      redis.call('ZADD', base .. 'rank', redis.call('HINCRBY', key, 'count', t.n), t.id)
    end
    if t.learn ~= '' and redis.call('HEXISTS', key, 'learned') == 0 then
      redis.call('HSET', key, 'learned', t.learn, 'learned_at', NOW_TEXT)
    end
    if #t.w > 0 then
      redis.call('LPUSH', base .. 'win:' .. t.id, unpack(t.w))
      redis.call('LTRIM', base .. 'win:' .. t.id, 0, recent - 1)
    end
  end
  trim(source, cap)
  local coverage, warn = count_lines(source)
  out[#out + 1] = source
  out[#out + 1] = new
  out[#out + 1] = coverage
  out[#out + 1] = warn
end
return out
