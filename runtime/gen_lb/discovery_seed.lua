-- gen_lb.discovery_seed: what an upstream's peers become outside the watch
-- itself: seeded at start (the dump file, else the fallback list when it
-- needs no DNS, or the live list a reload keeps), and published with one
-- change line. Touches the peers dict through gen_lb.peers and reads
-- gen_lb.dump and gen_lb.discovery_fallback.
local config = require "gen_lb.config"
local peers = require "gen_lb.peers"
local dump = require "gen_lb.dump"
local fallback = require "gen_lb.discovery_fallback"
local log = require "gen_lb.log"

local ngx = ngx
local now = ngx.now
local concat = table.concat
local sort = table.sort
local find = string.find
local fmt = string.format
local ipairs = ipairs

local _M = { _VERSION = "0.1.0" }

--- What identifies the upstream's Consul query: a reload that keeps it keeps the live list.
local function service_key(up)
  local tags = {}
  for i, t in ipairs(up.tags) do
    tags[i] = t
  end
  sort(tags)
  return up.service .. "|" .. (up.datacenter or "") .. "|" .. concat(tags, ",")
end

_M.service_key = service_key

local function log_change(name, version, source, index, added, removed, count)
  log.change('upstream "', name, '": peers changed to version ', version, " from ", source,
    index and index > 0 and fmt(" (Consul index %.0f)", index) or "",
    ": added ", log.brief(added), "; removed ", log.brief(removed), "; ", count, " peer(s) now")
end

--- Make `list` the upstream's peers (gen_lb.peers.publish), logging the
--- change once; returns changed, or nil when it could not be stored.
local function publish(name, list, source, fields)
  local changed, version, added, removed = peers.publish(name, list, source, fields)
  if changed == nil then
    log.err('upstream "', name, '": cannot store peers: ', version)
    return nil
  end
  if changed then
    log_change(name, version, source, fields and fields.index, added, removed, #list)
  end
  return changed
end

_M.publish = publish

--- init_by_lua: give every upstream its starting peers, from the dump file,
--- else from its fallback list. On a reload (HUP) the shared dict still holds
--- live lists; an upstream whose service, tags and dc did not change keeps them.
function _M.seed()
  local saved, err = dump.read()
  -- A refused dump path was logged by gen_lb.runtime already.
  if not saved and err and not dump.refused and not find(err, "No such file", 1, true) then
    log.warn("ignoring the dump file: ", err)
  end
  saved = saved or {}
  for _, name in ipairs(config.upstream_names) do
    local up = config.upstreams[name]
    local key = service_key(up)
    local meta = peers.meta(name)
    local live = peers.stored(name)
    if live and meta.key == key then
      -- A reload: keep the live list; the watcher refreshes it.
      peers.update_meta(name, { last_error = ngx.null })
    else
      if live then
        peers.clear(name)
      end
      local from = saved[name]
      if from and from.key == key and #from.peers > 0 then
        publish(name, from.peers, "dump", { key = key, index = 0 })
      elseif #up.fallback > 0 and not fallback.has_names(name) then
        publish(name, (fallback.list(up)), "fallback", { key = key, index = 0 })
      else
        -- No peers yet; with host names among the fallback peers, the
        -- watcher's fallback loop publishes them once resolved (DNS needs a timer).
        peers.update_meta(name, { key = key, source = "none", version = 0, index = 0, count = 0, updated_at = now() })
      end
    end
  end
end

return _M
