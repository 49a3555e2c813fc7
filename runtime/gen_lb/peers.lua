-- gen_lb.peers: each upstream's peer list, handed from the watcher to every
-- worker through the peers shared dict.
--
-- Keys in the dict, per upstream NAME:
--   "v:NAME"  a number that changes whenever the list does (read per request)
--   "p:NAME"  "<version>\n<json array of [host, port, weight]>"
--   "m:NAME"  JSON meta: version, index, updated_at, source, last_error, ...
--   "s:NAME"  the version sequence (incr)
-- and "dump" (JSON state of the dump file).
--
-- The writer stores "p:" before "v:", so a reader that sees a new "v:" finds
-- the new list. Each worker decodes a list once per change and keeps it; the
-- per-request path is one dict read of "v:NAME" and table lookups.
--
-- Owns the peers shared dict (every key above); the watcher is its only writer
-- of lists, gen_lb.dump writes the "dump" state, gen_lb.health forgets removed upstreams.
local config = require "gen_lb.config"
local cjson = require "cjson.safe"

local ngx = ngx
local now = ngx.now
local decode = cjson.decode
local encode = cjson.encode
local find = string.find
local sub = string.sub
local match = string.match
local concat = table.concat
local sort = table.sort
local pairs = pairs
local ipairs = ipairs
local tonumber = tonumber
local tostring = tostring
local type = type

local _M = { _VERSION = "0.1.0" }

local DICT_NAME = config.dicts.peers
local dict = ngx.shared[DICT_NAME]

-- Precomputed keys: no string building on the hot path.
local vkey, pkey, mkey, skey = {}, {}, {}, {}
for _, name in ipairs(config.upstream_names) do
  vkey[name] = "v:" .. name
  pkey[name] = "p:" .. name
  mkey[name] = "m:" .. name
  skey[name] = "s:" .. name
end
local DUMP_KEY = "dump"

-- Shared by every caller that gets "no peers"; never mutated.
local EMPTY = {}
_M.EMPTY = EMPTY

-- This worker's decoded copies: the "v:" value they were read at, the list, its version.
local seen, lists, versions = {}, {}, {}

local function peer_id(host, port)
  if find(host, ":", 1, true) then
    return "[" .. host .. "]:" .. port
  end
  return host .. ":" .. port
end
_M.peer_id = peer_id

local function valid_ipv4(s)
  local a, b, c, d = match(s, "^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
  if not a then
    return false
  end
  for _, o in ipairs({ a, b, c, d }) do
    if #o > 3 or tonumber(o) > 255 then
      return false
    end
  end
  return true
end

--- Whether a peer address is an IP literal (balancer.set_current_peer takes
--- nothing else): dotted IPv4, or IPv6 (hex groups and colons, maybe an IPv4 tail).
function _M.valid_ip(s)
  if type(s) ~= "string" then
    return false
  end
  if valid_ipv4(s) then
    return true
  end
  return find(s, ":", 1, true) ~= nil and match(s, "^[%x:.]+$") ~= nil and #s <= 45
end

local function by_address(a, b)
  if a.host ~= b.host then
    return a.host < b.host
  end
  return a.port < b.port
end

--- The canonical JSON of a list: sorted, one [host, port, weight] per peer.
--- Hosts are IP literals (checked by the caller), so no escaping is needed.
local function canonical(list)
  local sorted = {}
  for i, p in ipairs(list) do
    sorted[i] = p
  end
  sort(sorted, by_address)
  local parts = {}
  for i, p in ipairs(sorted) do
    parts[i] = '["' .. p.host .. '",' .. p.port .. "," .. (p.weight or 1) .. "]"
  end
  return "[" .. concat(parts, ",") .. "]"
end
_M.canonical = canonical

local function split_payload(raw)
  local nl = find(raw, "\n", 1, true)
  if not nl then
    return nil
  end
  return tonumber(sub(raw, 1, nl - 1)), sub(raw, nl + 1)
end

local function decode_list(json)
  local arr = decode(json)
  if type(arr) ~= "table" then
    return nil
  end
  local list = {}
  for i, p in ipairs(arr) do
    list[i] = { host = p[1], port = p[2], weight = p[3], id = peer_id(p[1], p[2]) }
  end
  return list
end

local function refresh(name, v)
  local raw = dict:get(pkey[name])
  local version, json
  if raw then
    version, json = split_payload(raw)
  end
  local list = json and decode_list(json)
  if not list then
    -- Evicted or unreadable: keep serving what this worker had.
    seen[name] = v
    return lists[name] or EMPTY, versions[name] or 0
  end
  seen[name], lists[name], versions[name] = v, list, version
  return list, version
end

--- list, version of an upstream's peers: an array of {host, port, weight, id},
--- sorted; EMPTY and 0 when there are none. Callers must not modify it; a
--- change replaces the list rather than editing it.
function _M.get(name)
  local key = vkey[name]
  if not key then
    return EMPTY, 0
  end
  local v = dict:get(key)
  if v == seen[name] then
    return lists[name] or EMPTY, versions[name] or 0
  end
  if v == nil then
    -- Never published (or the key was evicted): keep any copy we have.
    return lists[name] or EMPTY, versions[name] or 0
  end
  return refresh(name, v)
end

local function read_meta(name)
  local raw = mkey[name] and dict:get(mkey[name])
  local meta = raw and decode(raw)
  if type(meta) ~= "table" then
    meta = { version = 0, index = 0, updated_at = 0, source = "none" }
  end
  return meta
end

--- {version, index, updated_at, changed_at, source = "consul"|"dump"|"fallback"|"none",
---  last_error, consul_address, count, failures, key}
function _M.meta(name)
  return read_meta(name)
end

local function store(key, value)
  local ok, err, forcible = dict:set(key, value)
  if not ok then
    return nil, "lua_shared_dict " .. DICT_NAME .. ": cannot store " .. key .. ": " .. tostring(err)
      .. " (raise runtime.peers_dict_size)"
  end
  if forcible then
    ngx.log(ngx.WARN, "gen-lb: lua_shared_dict ", DICT_NAME, " is full: storing ", key,
      " evicted other entries (raise runtime.peers_dict_size)")
  end
  return true
end

--- Merge `fields` into an upstream's meta. Returns the meta.
function _M.update_meta(name, fields)
  local meta = read_meta(name)
  for k, v in pairs(fields) do
    if v == ngx.null then
      meta[k] = nil
    else
      meta[k] = v
    end
  end
  local ok, err = store(mkey[name], encode(meta))
  if not ok then
    ngx.log(ngx.ERR, "gen-lb: ", err)
  end
  return meta
end

local function ids(list)
  local out = {}
  for i, p in ipairs(list) do
    out[i] = p.id or peer_id(p.host, p.port)
  end
  return out
end

local function diff(old, new)
  local before, after = {}, {}
  for _, id in ipairs(old) do
    before[id] = true
  end
  for _, id in ipairs(new) do
    after[id] = true
  end
  local added, removed = {}, {}
  for _, id in ipairs(new) do
    if not before[id] then
      added[#added + 1] = id
    end
  end
  for _, id in ipairs(old) do
    if not after[id] then
      removed[#removed + 1] = id
    end
  end
  return added, removed
end

--- The stored list of an upstream, read from the dict (not this worker's copy):
--- list, version, canonical json; nil when none was published.
function _M.stored(name)
  local raw = pkey[name] and dict:get(pkey[name])
  if not raw then
    return nil
  end
  local version, json = split_payload(raw)
  local list = json and decode_list(json)
  if not list then
    return nil
  end
  return list, version, json
end

--- Writer side: make `list` (array of {host, port, weight}) the upstream's
--- peers, from `source`, merging `fields` into its meta. When the list is the
--- same as the stored one only the meta changes and the version stays.
--- Returns changed, version, added ids, removed ids; or nil, err.
function _M.publish(name, list, source, fields)
  if not pkey[name] then
    error("gen-lb peers.publish: unknown upstream " .. tostring(name), 2)
  end
  local json = canonical(list)
  local old_list, old_version, old_json = _M.stored(name)
  local t = now()
  local meta_fields = fields or {}
  meta_fields.source = source
  meta_fields.updated_at = t
  meta_fields.count = #list
  if old_json == json or (old_json == nil and #list == 0) then
    -- Unchanged (an empty list where there never was one stays "none", version 0).
    meta_fields.version = old_version or 0
    _M.update_meta(name, meta_fields)
    return false, old_version or 0
  end
  local version = dict:incr(skey[name], 1, 0)
  if not version then
    return nil, "lua_shared_dict " .. DICT_NAME .. ": cannot allocate a version for " .. name
  end
  local ok, err = store(pkey[name], version .. "\n" .. json)
  if not ok then
    return nil, err
  end
  meta_fields.version = version
  meta_fields.changed_at = t
  _M.update_meta(name, meta_fields)
  ok, err = store(vkey[name], version)
  if not ok then
    return nil, err
  end
  local added, removed = diff(old_list and ids(old_list) or {}, ids(decode_list(json)))
  return true, version, added, removed
end

--- Writer side: after an eviction, put the version key back.
function _M.repair(name)
  if dict:get(vkey[name]) == nil then
    local _, version = _M.stored(name)
    if version then
      store(vkey[name], version)
      return true
    end
  end
  return false
end

--- Forget an upstream's list (its service changed across a reload).
function _M.clear(name)
  dict:delete(vkey[name])
  dict:delete(pkey[name])
  dict:delete(mkey[name])
end

--- Forget every key of an upstream this config does not have (a reload
--- removed it), its version sequence included: no worker of this config
--- has a copy to confuse with a restarted sequence.
function _M.forget(name)
  for _, kind in ipairs({ "v:", "p:", "m:", "s:" }) do
    dict:delete(kind .. name)
  end
end

--- {path, written_at, ok, error} of the dump file.
function _M.dump_state()
  local raw = dict:get(DUMP_KEY)
  local state = raw and decode(raw)
  if type(state) ~= "table" then
    state = { path = nil, written_at = nil, ok = nil, error = nil }
  end
  return state
end

function _M.set_dump_state(state)
  local ok, err = store(DUMP_KEY, encode(state))
  if not ok then
    ngx.log(ngx.ERR, "gen-lb: ", err)
  end
end

return _M
