-- gen_lb.log: gen-lb's own log lines, all prefixed "gen-lb: ".
-- Change lines (peers added/removed, watcher elected) go out at the level the
-- spec chose (runtime.log_level); problems go out at WARN or ERR. Callers log
-- once per event or per failure streak, never per request.
--
-- Every part of every line goes through escape(): names, IDs, addresses and
-- errors from Consul or from requests reach these lines, and a raw newline in
-- one (a Service.ID of "x\n... [emerg] ...") would forge log lines.
--
-- Owns nothing; touches nothing but nginx's error log.
local config = require "gen_lb.config"

local ngx = ngx
local ngx_log = ngx.log
local select = select
local tostring = tostring
local concat = table.concat
local byte = string.byte
local find = string.find
local gsub = string.gsub
local fmt = string.format

local _M = { _VERSION = "0.1.0" }

local LEVELS = {
  debug = ngx.DEBUG,
  info = ngx.INFO,
  notice = ngx.NOTICE,
  warn = ngx.WARN,
  error = ngx.ERR,
}

local change_level = LEVELS[config.log_level]

local ESCAPES = { ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t", ["\\"] = "\\\\" }

local function escape_char(c)
  return ESCAPES[c] or fmt("\\x%02x", byte(c))
end

--- `v` as text fit for one log line: control characters (newlines, ESC...)
--- and DEL as \n, \r, \t or \xNN, and backslashes doubled, so that an
--- escaped sequence cannot be mistaken for one written by the value.
local function escape(v)
  local s = tostring(v)
  if find(s, "[%c\\]") then
    s = gsub(s, "[%c\\]", escape_char)
  end
  return s
end
_M.escape = escape

local function emit(level, ...)
  local n = select("#", ...)
  local parts = { "gen-lb: " }
  for i = 1, n do
    parts[i + 1] = escape((select(i, ...)))
  end
  -- Tail calls all the way down, so that nginx names the caller's file and
  -- line ("[lua] discovery.lua:350: failure(): gen-lb: ..."), not this one.
  return ngx_log(level, concat(parts))
end

--- A state change worth one line (peers changed, watcher elected).
function _M.change(...)
  return emit(change_level, ...)
end

function _M.info(...)
  return emit(ngx.INFO, ...)
end

function _M.debug(...)
  return emit(ngx.DEBUG, ...)
end

function _M.warn(...)
  return emit(ngx.WARN, ...)
end

function _M.err(...)
  return emit(ngx.ERR, ...)
end

--- "a, b, c" for at most `max` items of `list`, then "and N more".
function _M.brief(list, max)
  max = max or 10
  local n = #list
  if n == 0 then
    return "none"
  end
  if n <= max then
    return concat(list, ", ")
  end
  local head = {}
  for i = 1, max do
    head[i] = list[i]
  end
  return concat(head, ", ") .. " and " .. (n - max) .. " more"
end

return _M
