-- Patterns of sources whose hash slot is this partition's (prepended to each pattern script).
-- Keys (P = 'logllm:{p<k>}:', k from the source's name; S = the source, id = the template's id):
--   pat:sources          zset first seen -> source (the sources of this partition)
--   pat:all              zset first seen -> 'S:id' (every template of this partition's sources, for GET /patterns)
--   pat:S:meta           hash: first_seen (the source's, for the warm-up)
--   pat:S:t:<id>         hash: id, source, template, count, first_seen, last_seen, example, vocab, learned, learned_at
--   pat:S:seen           zset first seen -> 'S:id' (the source's templates)
--   pat:S:rank           zset count -> id (the trim order: rarest first, then least recently seen)
--   pat:S:win:<id>       list: ids of the latest windows that held the template, newest first
--   pat:S:paths          set: learned session transitions 'idA>idB' ('^' a session's start, '$' its end)
--                        and count values '#idA=3', '#idA-idB=-1' (the count rule's findings)
local P = ARGV[1]
local T = redis.call('TIME')
local NOW = tonumber(T[1]) + tonumber(T[2]) / 1000000
local NOW_TEXT = string.format('%.6f', NOW)

local function source_base(source) return P .. 'pat:' .. source .. ':' end

-- The source's first sight starts its warm-up; its first-seen time.
local function register_source(source)
  redis.call('ZADD', P .. 'pat:sources', 'NX', NOW, source)
  redis.call('HSETNX', source_base(source) .. 'meta', 'first_seen', NOW_TEXT)
  return redis.call('HGET', source_base(source) .. 'meta', 'first_seen')
end

local function drop_template(source, id)
  local base = source_base(source)
  redis.call('DEL', base .. 't:' .. id, base .. 'win:' .. id)
  redis.call('ZREM', base .. 'rank', id)
  redis.call('ZREM', base .. 'seen', source .. ':' .. id)
  redis.call('ZREM', P .. 'pat:all', source .. ':' .. id)
end

-- Keep at most cap templates: the rarest go first, and of those the one seen least recently.
local function trim(source, cap)
  local base = source_base(source)
  local over = redis.call('ZCARD', base .. 'rank') - cap
  while over > 0 do
    local lowest = redis.call('ZRANGE', base .. 'rank', 0, 0, 'WITHSCORES')
    local tied = redis.call('ZRANGEBYSCORE', base .. 'rank', lowest[2], lowest[2], 'LIMIT', 0, 64)
    local oldest, oldest_t = tied[1], math.huge
    for _, id in ipairs(tied) do
      local t = tonumber(redis.call('HGET', base .. 't:' .. id, 'last_seen')) or 0
      if t < oldest_t then oldest, oldest_t = id, t end
    end
    drop_template(source, oldest)
    over = over - 1
  end
end
