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
-- of lists, gen_lb.dump writes the "dump" state, gen_lb.health forgets removed
-- upstreams. What an address is (IPv4/IPv6 normalised, host names) is
-- gen_lb.peers_address, re-exported here for the callers that read lists.
local config = require "gen_lb.config"
local cjson = require "cjson.safe"
local address = require "gen_lb.peers_address"

local ngx = ngx
local now = ngx.now
local decode = cjson.decode
local encode = cjson.encode
local find = string.find
local sub = string.sub
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

local peer_id = address.peer_id
local classify = address.classify
local connect_host = address.connect_host
_M.peer_id = peer_id
_M.classify = classify
_M.valid_ip = address.valid_ip
_M.connect_host = connect_host

local function by_address(a, b)
  if a.host ~= b.host then
    return a.host < b.host
  end
  return a.port < b.port
end

--- The canonical JSON of a list: sorted, one [host, port, weight] per peer,
--- hosts in canonical form and each ip:port once (the larger weight kept).
--- Entries whose host is not an IP literal are left out (callers check
--- and warn first), so no escaping is needed.
local function canonical(list)
  local sorted, by_id = {}, {}
  for _, p in ipairs(list) do
    local kind, host = classify(p.host)
    if kind == "ipv4" or kind == "ipv6" then
      local id = peer_id(host, p.port)
      local prev = by_id[id]
      if prev then
        if (p.weight or 1) > prev.weight then
          prev.weight = p.weight or 1
        end
      else
        prev = { host = host, port = p.port, weight = p.weight or 1 }
        by_id[id] = prev
        sorted[#sorted + 1] = prev
      end
    end
  end
  sort(sorted, by_address)
  local parts = {}
  for i, p in ipairs(sorted) do
    parts[i] = '["' .. p.host .. '",' .. p.port .. "," .. p.weight .. "]"
  end
  return "[" .. concat(parts, ",") .. "]", #sorted
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
    -- addr: the host as set_current_peer and connect take it, made once per change.
    list[i] = { host = p[1], port = p[2], weight = p[3], id = peer_id(p[1], p[2]), addr = connect_host(p[1]) }
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

--- list, version of an upstream's peers: an array of {host, port, weight, id, addr},
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
  local json, count = canonical(list)
  local old_list, old_version, old_json = _M.stored(name)
  local t = now()
  local meta_fields = fields or {}
  meta_fields.source = source
  meta_fields.updated_at = t
  meta_fields.count = count
  if old_json == json or (old_json == nil and count == 0) then
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
  local added, removed = diff(old_list and ids(old_list) or {}, ids(decode_list(json)))
  if old_list then
    -- Before "v:": no worker sees a joined peer before it is held back.
    -- (The first list after a start holds nobody: there is no one else to serve.)
    -- Required here, not at load: gen_lb.health requires this module.
    require("gen_lb.health").joined(name, added)
  end
  ok, err = store(vkey[name], version)
  if not ok then
    return nil, err
  end
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
