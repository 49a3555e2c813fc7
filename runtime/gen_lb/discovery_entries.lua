-- gen_lb.discovery_entries: the parsing of Consul's /v1/health/service
-- answer into peers, and the one way addresses become peers (add_peer,
-- which the fallback peers' resolver uses too). No shared dicts: it reads
-- its argument, gen_lb.peers' address rules, and for an Address that is a
-- host name gen_lb.resolve (the only I/O, DNS through nginx.http.resolver;
-- the watcher's timer runs it).
local peers = require "gen_lb.peers"
local resolve = require "gen_lb.resolve"

local ngx = ngx
local sub = string.sub
local next = next
local ipairs = ipairs
local clear = require "table.clear"
local type = type
local tostring = tostring

local _M = { _VERSION = "0.1.0" }

local classify = peers.classify

-- Anyone's text on its way into the error log, cut to 128 bytes so that one
-- entry cannot flood it; gen_lb.log escapes every logged value itself.
local function escape(v)
  return sub(v, 1, 128)
end

local function describe(v)
  if v == nil then
    return "missing"
  end
  if v == ngx.null then
    return "null"
  end
  local t = type(v)
  if t == "string" then
    return '"' .. escape(v) .. '"'
  end
  if t == "number" or t == "boolean" then
    return t .. " " .. tostring(v)
  end
  return "a " .. t
end

--- One /v1/health/service entry -> {host, port, weight} (hosts: an array of
--- IPs when the Address was a host name), or nil, why.
local function parse_entry(e)
  if type(e) ~= "table" then
    return nil, "entry is " .. describe(e)
  end
  local svc, node = e.Service, e.Node
  if type(svc) ~= "table" then
    return nil, "Service is " .. describe(svc)
  end
  local id = type(svc.ID) == "string" and escape(svc.ID) or "?"
  local addr = svc.Address
  if addr == nil or addr == "" or addr == ngx.null then
    addr = type(node) == "table" and node.Address or nil
    if addr == nil or addr == "" or addr == ngx.null then
      return nil, "service " .. id .. ": no Service.Address and no Node.Address"
    end
  end
  if type(addr) ~= "string" then
    return nil, "service " .. id .. ": address is " .. describe(addr)
  end
  local kind, host = classify(addr)
  local hosts
  if kind == "name" then
    -- set_current_peer takes IP literals only: a name is resolved here, or dropped.
    local why
    hosts, why = resolve.resolve(addr)
    if not hosts then
      return nil, "service " .. id .. ": address " .. describe(addr)
        .. " is not an IP address (a host name, not resolved: " .. why .. ")"
    end
  elseif not kind then
    return nil, "service " .. id .. ": address " .. describe(addr) .. " " .. host
  end
  local port = svc.Port
  if type(port) ~= "number" or port % 1 ~= 0 or port < 1 or port > 65535 then
    return nil, "service " .. id .. ": Port is " .. describe(port)
  end
  local weight, note = 1, nil
  local w = svc.Weights
  if w ~= nil and w ~= ngx.null then
    local passing = type(w) == "table" and w.Passing or nil
    if type(passing) == "number" and passing % 1 == 0 and passing >= 1 then
      weight = passing
    elseif passing ~= nil then
      note = "service " .. id .. ": Weights.Passing is " .. describe(passing) .. ", using 1"
    elseif type(w) ~= "table" then
      note = "service " .. id .. ": Weights is " .. describe(w) .. ", using weight 1"
    end
  end
  return { host = host, hosts = hosts, port = port, weight = weight }, note
end

--- Add `peer` ({host, port, weight}; hosts: the IPs its host name resolved
--- to, when it had one) to `list`, one entry per address in canonical form
--- (IPv4, IPv6 without brackets) and each ip:port once, the larger weight
--- kept (two registrations, or a name and an IP, are one peer); `by_id`
--- indexes `list` by peer id. An address that is not an IP goes to `problems`.
--- Shared by Consul's entries and the fallback peers (gen_lb.discovery_fallback).
local function add_peer(list, by_id, peer, problems)
  local hosts = peer.hosts or { peer.host }
  for k = 1, #hosts do
    local kind, host = classify(hosts[k])
    local id = (kind == "ipv4" or kind == "ipv6") and peers.peer_id(host, peer.port)
    local prev = id and by_id[id]
    if not id then
      problems[#problems + 1] = "a resolved address " .. describe(hosts[k]) .. " is not an IP address"
    elseif prev then
      if peer.weight > prev.weight then
        prev.weight = peer.weight
      end
    else
      prev = { host = host, port = peer.port, weight = peer.weight }
      by_id[id] = prev
      list[#list + 1] = prev
    end
  end
end
_M.add_peer = add_peer

--- The problems not in `warned` (the set of the last round's problems,
--- which this replaces in place with these), so that a caller warns of
--- each once while it lasts, not once per round.
local function fresh_problems(problems, warned)
  local fresh = {}
  for _, why in ipairs(problems) do
    if not warned[why] then
      fresh[#fresh + 1] = why
    end
  end
  clear(warned)
  for _, why in ipairs(problems) do
    warned[why] = true
  end
  return fresh
end
_M.fresh_problems = fresh_problems

--- A decoded health answer -> list (deduplicated), problems (strings), total
--- entries, rejected entries, and fresh: the problems not in `warned` (the
--- caller's set of the last answer's problems, which this replaces in place),
--- so that the caller warns of each once while it lasts; or nil, err.
local function parse_entries(doc, warned)
  if type(doc) ~= "table" then
    return nil, "answer is " .. describe(doc) .. ", not a JSON array"
  end
  if next(doc) ~= nil and doc[1] == nil then
    return nil, "answer is a JSON object, not an array"
  end
  local list, problems, by_id = {}, {}, {}
  local total, rejected = #doc, 0
  for i = 1, total do
    local peer, why = parse_entry(doc[i])
    if why then
      problems[#problems + 1] = why
    end
    if not peer then
      rejected = rejected + 1
    end
    if peer then
      add_peer(list, by_id, peer, problems)
    end
  end
  return list, problems, total, rejected, warned and fresh_problems(problems, warned) or problems
end
_M.parse = parse_entries

return _M
