-- gen_lb.dump: the last-known-good peer lists on disk, so that a restart
-- while Consul is down still has peers.
--
-- The watcher writes every upstream's last good list after each change,
-- atomically (temp file, fsync, rename). init_by_lua reads it before workers
-- start. The master (root, usually) creates the dump directory and gives it
-- to the worker user, since workers write the file after dropping privileges.
--
-- Owns the dump file and its directory; reads lists through gen_lb.peers and
-- records the outcome there ("dump" key).
local config = require "gen_lb.config"
local cjson = require "cjson.safe"
local peers = require "gen_lb.peers"
local sys = require "gen_lb.sys"
local log = require "gen_lb.log"

local ngx = ngx
local now = ngx.now
local timer_at = ngx.timer.at
local encode = cjson.encode
local decode = cjson.decode
local concat = table.concat
local sort = table.sort
local sub = string.sub
local find = string.find
local match = string.match
local fmt = string.format
local io_open = io.open
local ipairs = ipairs
local pairs = pairs
local pcall = pcall
local tonumber = tonumber
local type = type
local tostring = tostring

local _M = { _VERSION = "0.1.0" }

local FORMAT = 1

-- The prefix as an absolute, resolved directory. `nginx -p dist/` (the
-- README's quick start) gives a relative prefix, which nginx resolves against
-- its working directory; so does this, once, in the master at init (workers
-- inherit the result, whatever working_directory makes their cwd).
local function resolved_prefix()
  local prefix = ngx.config.prefix()
  if sub(prefix, 1, 1) ~= "/" then
    local cwd, err = sys.getcwd()
    if not cwd then
      return nil, "cannot read the working directory to resolve the prefix " .. prefix .. ": " .. err
    end
    prefix = cwd .. "/" .. prefix
  end
  return sys.resolve(prefix)
end

local function inside(path, dir)
  return dir == "/" or sub(path, 1, #dir + 1) == dir .. "/"
end

-- The dump path, resolved (symlinks, "..") and confined to the prefix: the
-- master runs as root and hands the dump's directory to the worker user, so
-- a path that leads elsewhere (../victim/peers.json, a symlinked state/)
-- must never be created, chowned, read or written. gen-lb's validation
-- rejects such a dump_file; this catches a hand-edited config or a symlink.
local PREFIX, PATH, REFUSED
do
  local err
  PREFIX, err = resolved_prefix()
  if not PREFIX then
    REFUSED = err
  else
    local given = config.dump_file
    PATH, err = sys.resolve(sub(given, 1, 1) == "/" and given or PREFIX .. "/" .. given)
    if not PATH then
      REFUSED = "cannot resolve consul.dump_file " .. given .. ": " .. err
    elseif PATH == PREFIX or not inside(PATH, PREFIX) then
      REFUSED = "consul.dump_file " .. given .. " resolves to " .. PATH .. ", outside the prefix " .. PREFIX
        .. "; the dump is disabled (nothing outside the prefix is created, chowned or written)"
    end
  end
  PATH = PATH or config.dump_file
end
_M.path = PATH
_M.prefix = PREFIX
--- Why the dump is disabled (nil when it is not).
_M.refused = REFUSED

local function dirname(path)
  return match(path, "^(.*)/[^/]*$") or "."
end

--- init_by_lua (master): make sure the worker user can write the dump
--- directory. As root, gen-lb creates the directory and chowns it to the
--- worker user only when it lies strictly inside the prefix (the path is
--- confined above; the prefix itself is never chowned).
--- Returns true or nil, err (a warning: discovery works without a dump).
function _M.prepare_dir()
  if REFUSED then
    return nil, REFUSED
  end
  local dir = dirname(PATH)
  local ok, created = sys.mkdir_p(dir)
  if not ok then
    return nil, created
  end
  if not sys.is_root() then
    -- Workers run as the master's user, who just made (or owns) the directory.
    return true
  end
  if dir == PREFIX or not inside(dir, PREFIX) then
    return true
  end
  -- nginx's default worker user when the master is root and `user` is unset.
  local user = config.worker_user
  local uid, gid = sys.user_ids(user)
  if not uid then
    return nil, "cannot make " .. dir .. " writable for workers: " .. gid
  end
  local err
  ok, err = sys.chown(dir, uid, gid)
  if not ok then
    return nil, "chown " .. dir .. " to " .. user .. ": " .. err
  end
  return true
end

local function valid_peer(p)
  if type(p) ~= "table" then
    return nil
  end
  local host, port, weight = p[1], p[2], p[3]
  if not peers.valid_ip(host) or type(port) ~= "number" or port < 1 or port > 65535 or port % 1 ~= 0 then
    return nil
  end
  if type(weight) ~= "number" or weight < 1 or weight % 1 ~= 0 then
    weight = 1
  end
  return { host = host, port = port, weight = weight }
end

--- The dump's lists: {NAME = {key=, peers = {{host, port, weight}...}, index=}}, or nil, err.
function _M.read()
  if REFUSED then
    return nil, REFUSED
  end
  local f, err = io_open(PATH, "rb")
  if not f then
    return nil, err
  end
  local text = f:read("*a")
  f:close()
  local doc = decode(text or "")
  if type(doc) ~= "table" or doc.format ~= FORMAT or type(doc.upstreams) ~= "table" then
    return nil, PATH .. " is not a gen-lb dump (format " .. FORMAT .. ")"
  end
  local out = {}
  for name, u in pairs(doc.upstreams) do
    if type(name) == "string" and type(u) == "table" and type(u.peers) == "table" then
      local list = {}
      for _, p in ipairs(u.peers) do
        local peer = valid_peer(p)
        if peer then
          list[#list + 1] = peer
        end
      end
      out[name] = { key = u.key, peers = list, index = tonumber(u.index) or 0 }
    end
  end
  return out
end

-- When this config started (init, in the master): a dump another build wrote
-- after it is newer than this config.
local STARTED = now()

-- Entries to keep from the file as it is: those a newer writer left (another
-- build's, written since this config started: `gen-lb install` seeding the
-- next config before its reload) for upstreams this config does not have, or
-- has under another Consul query. Without this, the old config's watcher,
-- writing between the seeding and the reload, would drop the seeded lists of
-- upstreams the new config adds. An older build's file carries nothing.
local function carried()
  local f = io_open(PATH, "rb")
  if not f then
    return nil
  end
  local text = f:read("*a")
  f:close()
  local doc = decode(text or "")
  if type(doc) ~= "table" or doc.format ~= FORMAT or type(doc.upstreams) ~= "table"
    or doc.build_id == config.build_id or type(doc.written_at) ~= "number" or doc.written_at < STARTED then
    return nil
  end
  local out = {}
  for name, u in pairs(doc.upstreams) do
    if type(name) == "string" and type(u) == "table" and type(u.peers) == "table" then
      local up = config.upstreams[name]
      local ours = up and peers.meta(name).key
      if not up or (type(u.key) == "string" and u.key ~= ours) then
        out[name] = u
      end
    end
  end
  return out
end

-- The file's text: upstreams in name order, lists in canonical order, so
-- that the same state always gives the same bytes (apart from written_at).
local function render(written_at)
  local keep = carried() or {}
  local entries, names = {}, {}
  for name, u in pairs(keep) do
    names[#names + 1] = name
    entries[name] = encode(name) .. ":{\"key\":" .. encode(u.key or "") .. ",\"index\":"
      .. fmt("%.0f", tonumber(u.index) or 0) .. ",\"peers\":" .. (#u.peers > 0 and encode(u.peers) or "[]") .. "}"
  end
  for _, name in ipairs(config.upstream_names) do
    local list, _, json = peers.stored(name)
    local meta = peers.meta(name)
    -- Only lists that came from Consul (or an earlier dump) are worth keeping.
    if not keep[name] and list and (meta.source == "consul" or meta.source == "dump") then
      names[#names + 1] = name
      entries[name] = encode(name) .. ":{\"key\":" .. encode(meta.key or "")
        .. ",\"index\":" .. fmt("%.0f", tonumber(meta.index) or 0) .. ",\"peers\":" .. json .. "}"
    end
  end
  sort(names)
  local parts = {}
  for i, name in ipairs(names) do
    parts[i] = entries[name]
  end
  return "{\"format\":" .. FORMAT .. ",\"generator\":" .. encode(config.generator)
    .. ",\"build_id\":" .. encode(config.build_id) .. ",\"written_at\":" .. written_at
    .. ",\"upstreams\":{" .. concat(parts, ",") .. "}}\n"
end

local last_error

--- Write the dump now. Returns true or nil, err; records the outcome for status.
function _M.write()
  ngx.update_time()
  local t = now()
  local ok, err
  if REFUSED then
    ok, err = nil, REFUSED
  else
    ok, err = sys.write_atomic(PATH, render(t), tostring(ngx.worker.pid()))
  end
  local state = peers.dump_state()
  state.path = PATH
  if ok then
    state.ok, state.written_at, state.error = true, t, nil
    if last_error then
      log.warn("dump file ", PATH, " written again")
    end
    last_error = nil
  else
    state.ok, state.error = false, err
    if err ~= last_error then
      local hint = ""
      if find(err, "Permission denied", 1, true) then
        hint = " (the worker user must be able to reach and write " .. dirname(PATH)
          .. ": every directory above it needs search permission for it)"
      end
      log.err("cannot write the dump file (peers will not survive a restart during a Consul outage): ", err, hint)
    end
    last_error = err
  end
  peers.set_dump_state(state)
  return ok, err
end

local pending = false
local dirty = false

local function flush(premature)
  pending = false
  if premature then
    return
  end
  dirty = false
  local ok, err = pcall(_M.write)
  if not ok then
    dirty = true
    log.err("dump write failed: ", err)
  end
end

--- Write soon; several changes in one moment give one write.
function _M.schedule()
  dirty = true
  if pending then
    return
  end
  pending = true
  local ok, err = timer_at(0, flush)
  if not ok then
    pending = false
    log.err("cannot schedule the dump write: ", err)
  end
end

--- For the watcher's periodic tick: retry a write that failed.
local last_retry = 0

function _M.retry_if_needed()
  if (dirty or last_error) and not pending and now() - last_retry >= 10 then
    last_retry = now()
    _M.schedule()
  end
end

return _M
