-- Append lines to windows of one partition, closing those that fill up.
-- ARGV: prefix, mode ('session'|'fixed'), max_session_lines, window_size, window_step, open_share, queue_share,
-- then key, line pairs. The caps are checked here, atomically with the writes, against this partition's share
-- of max_open_windows and max_ready_queue: concurrent requests cannot pass them together.
-- Returns {'ok', ids closed...}, or {'queue_full'} / {'too_many_sessions'} having written nothing.
local mode = ARGV[2] == 'fixed' and 'f' or 's'
local max_lines = tonumber(ARGV[3])
local size = tonumber(ARGV[4])
local step = tonumber(ARGV[5])
local open_share = tonumber(ARGV[6])
local queue_share = tonumber(ARGV[7])
local FIRST = 8

if redis.call('XLEN', STREAM) >= queue_share then return {'queue_full'} end
local new, counted = 0, {}
for i = FIRST, #ARGV, 2 do
  local key = ARGV[i]
  if not counted[key] then
    counted[key] = true
    if redis.call('HGET', meta_key(key), 'open') ~= '1' then new = new + 1 end
  end
end
if new > 0 and (tonumber(redis.call('GET', OPEN)) or 0) + new > open_share then return {'too_many_sessions'} end

local closed = {'ok'}

local function append_session(key, content)
  local meta = meta_key(key)
  if redis.call('HGET', meta, 'open') ~= '1' then mark_open(key, meta, 's') end
  local len = redis.call('RPUSH', lines_key(key), content)
  redis.call('ZADD', LASTSEEN, NOW_TEXT, key)
  if len >= max_lines then return close_session(key, 'size') end
  return false
end

local function copy_head(src, dst, count)
  for first = 0, count - 1, 1000 do
    local last = math.min(first + 999, count - 1)
    redis.call('RPUSH', dst, unpack(redis.call('LRANGE', src, first, last)))
  end
end

local function append_fixed(key, content)
  local meta = meta_key(key)
  local lines = lines_key(key)
  if redis.call('HGET', meta, 'open') ~= '1' then
    local nxt = tonumber(redis.call('HGET', meta, 'next')) or 0
    mark_open(key, meta, 'f')
    redis.call('HSET', meta, 'start', nxt, 'next', nxt)
  end
  local len = redis.call('RPUSH', lines, content)
  local nxt = redis.call('HINCRBY', meta, 'next', 1)
  redis.call('ZADD', LASTSEEN, NOW_TEXT, key)
  if len < size then return false end
  local start = tonumber(redis.call('HGET', meta, 'start'))
  local id = key .. ':' .. start
  if step >= size then  -- tumbling: the buffer is the window
    redis.call('RENAME', lines, closed_key(id))
    redis.call('HSET', meta, 'start', nxt, 'covered', nxt)
    mark_closed(key, meta)
  else  -- sliding: copy the window out, keep the overlap for the next one
    copy_head(lines, closed_key(id), size)
    redis.call('LTRIM', lines, step, -1)
    redis.call('HSET', meta, 'start', start + step, 'covered', start + size)
  end
  enqueue(key, id, 'size', size)
  return id
end

for i = FIRST, #ARGV, 2 do
  local key, content = ARGV[i], ARGV[i + 1]
  local f = redis.call('HMGET', meta_key(key), 'open', 'mode')
  if f[1] == '1' and f[2] ~= mode then  -- a key of the old scheme, windowed the other way before: finish it
    local id = close_window(key, 'mode')
    if id then closed[#closed + 1] = id end
  end
  local id
  if mode == 'f' then id = append_fixed(key, content) else id = append_session(key, content) end
  if id then closed[#closed + 1] = id end
end
return closed
