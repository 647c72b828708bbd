-- Shared by every window script (prepended to each): open, buffer and close the windows of one partition.
-- All keys share the partition's hash tag (ARGV[1] = 'logllm:{p<k>}:'), so a script stays in one slot.
-- Meta hash per window key: open ('1'/'0'), mode ('s'ession/'f'ixed); session: n (windows closed so far);
-- fixed: start (index of the first buffered line), next (lines seen), covered (end of the last window).
-- Times are the Redis server's clock (TIME), so processes whose clocks disagree still make the same decisions.
if redis.replicate_commands then redis.replicate_commands() end  -- Redis < 7: replicate effects, not TIME
local P = ARGV[1]
local T = redis.call('TIME')
local NOW = tonumber(T[1]) + tonumber(T[2]) / 1000000
local NOW_TEXT = string.format('%.6f', NOW)
local STREAM = P .. 'ready'
local LASTSEEN = P .. 'lastseen'
local OPEN = P .. 'open'

local function meta_key(key) return P .. 'meta:' .. key end
local function lines_key(key) return P .. 'lines:' .. key end
local function closed_key(id) return P .. 'closed:' .. id end

local function enqueue(key, id, reason, n_lines)
  redis.call('XADD', STREAM, '*', 'id', id, 'key', key, 'reason', reason, 'closed_at', NOW_TEXT, 'n_lines', n_lines)
end

local function mark_closed(key, meta)
  redis.call('HSET', meta, 'open', '0')
  redis.call('ZREM', LASTSEEN, key)
  redis.call('DECR', OPEN)
end

local function mark_open(key, meta, mode)
  redis.call('HSET', meta, 'open', '1', 'mode', mode)
  redis.call('PERSIST', meta)
  redis.call('INCR', OPEN)
end

-- The number of a session's next window when its meta holds none (a new session, or its numbering expired
-- with its verdicts, after verdict_ttl_s): after the newest window the session's records still hold
-- (service/records/records_lib.lua, rec:sess:<key>, kept as long as its records), so a returning session id
-- never takes the id of a record that is still kept.
local function next_after_records(key)
  local newest = redis.call('ZREVRANGE', P .. 'rec:sess:' .. key, 0, 0, 'WITHSCORES')
  if newest[2] then return tonumber(newest[2]) + 1 end
  return 0
end

-- Session: the lines move (RENAME, O(1)) to closed:<id>; id = key, then key#1, key#2, ...
local function close_session(key, reason)
  local meta = meta_key(key)
  local n = tonumber(redis.call('HGET', meta, 'n')) or next_after_records(key)
  local id = key
  if n > 0 then id = key .. '#' .. n end
  local lines = lines_key(key)
  local n_lines = redis.call('LLEN', lines)
  redis.call('RENAME', lines, closed_key(id))
  redis.call('HSET', meta, 'n', n + 1)
  mark_closed(key, meta)
  enqueue(key, id, reason, n_lines)
  return id
end

-- Fixed: a partial window holds the buffered lines and closes only if some of them no window covered yet.
local function close_fixed(key, reason)
  local meta = meta_key(key)
  local f = redis.call('HMGET', meta, 'start', 'next', 'covered')
  local start, nxt, covered = tonumber(f[1]) or 0, tonumber(f[2]) or 0, tonumber(f[3]) or 0
  local lines = lines_key(key)
  local id = false
  if nxt > covered and redis.call('EXISTS', lines) == 1 then
    id = key .. ':' .. start
    local n_lines = redis.call('LLEN', lines)
    redis.call('RENAME', lines, closed_key(id))
    enqueue(key, id, reason, n_lines)
  else
    redis.call('DEL', lines)
  end
  redis.call('HSET', meta, 'start', nxt, 'covered', nxt)
  mark_closed(key, meta)
  return id
end

-- Close the open window of key, whatever its mode; false when none is open or nothing was left to score.
local function close_window(key, reason)
  local meta = meta_key(key)
  local f = redis.call('HMGET', meta, 'open', 'mode')
  if f[1] ~= '1' then
    redis.call('ZREM', LASTSEEN, key)  -- never leave a key the idle sweep would find again and again
    return false
  end
  if f[2] == 'f' then return close_fixed(key, reason) end
  return close_session(key, reason)
end
