-- gen_lb.config_check: the runtime's side of the config contract
-- (src/contract/runtime-config.ts is the TypeScript side). Every field the
-- runtime reads from gen_lb.config, with its type; runtime.init checks the
-- config against it before any module reads a field, and fails the start
-- naming the first missing or mistyped one. The runtime reads fields with no
-- fallbacks: defaults live in the spec schema only.
--
-- Pure: touches nothing but its argument (loadable by plain LuaJIT for tests).
local ipairs = ipairs
local pairs = pairs
local type = type
local sub = string.sub
local tostring = tostring

local _M = { _VERSION = "0.1.0" }

-- A leaf is a type name, "?" at its end when the field may be absent (it
-- then means "none", never "the default"). A table is a nested shape:
-- _each for arrays, _values for string-keyed maps, _optional for a table
-- that may be absent.
local ACTIVE = {
  _optional = true,
  type = "string", path = "string", host = "string?", headers = { _optional = true, _values = "string" },
  interval = "number", timeout = "number", fall = "number", rise = "number",
  valid_statuses = { _each = "number" }, concurrency = "number", ssl_verify = "boolean",
  probe_new = "boolean",
}
local PASSIVE = { _optional = true, max_fails = "number", fail_timeout = "number", statuses = { _each = "number" } }
local UPSTREAM = {
  name = "string", service = "string", tags = { _each = "string" }, datacenter = "string?",
  balance = "string", hash_var = "string?", retries = "number", fail_open = "boolean", log_phase = "boolean",
  slow_start = "number?",
  fallback = { _each = { host = "string", port = "number", weight = "number" } },
  healthcheck = { active = ACTIVE, passive = PASSIVE },
}
local STATIC = {
  balance = "string", retries = "number", resolve = "boolean",
  servers = { _each = {
    address = "string", weight = "number", max_fails = "number", fail_timeout = "number",
    max_conns = "number", backup = "boolean", down = "boolean",
  } },
}
local DNS = {
  service = "string", balance = "string", retries = "number", dns_name = "string",
  resolver = "string", valid = "number", health_checks = { active = "boolean", passive = "boolean" },
}
local SHAPE = {
  build_id = "string", generator = "string",
  dicts = { peers = "string", health = "string", locks = "string" },
  log_level = "string", worker_user = "string", dump_file = "string", hold_for_peers = "number",
  consul = {
    addresses = { _each = { scheme = "string", host = "string", port = "number" } },
    token_env = "string?", datacenter = "string?", wait = "number", timeout = "number",
    ssl_verify = "boolean", ca_file = "string?", empty = "string",
  },
  upstream_names = { _each = "string" },
  upstreams = { _values = UPSTREAM },
  static_upstream_names = { _each = "string" },
  static_upstreams = { _values = STATIC },
  dns_upstream_names = { _each = "string" },
  dns_upstreams = { _values = DNS },
  upstream_module = "boolean",
  status = { enabled = "boolean", path = "string" },
  resolver = { _each = { host = "string", port = "number" } },
}
_M.SHAPE = SHAPE

local check

local function leaf(value, want, path)
  local optional = sub(want, -1) == "?"
  if optional then
    want = sub(want, 1, -2)
  end
  if value == nil then
    if optional then
      return true
    end
    return nil, path .. " is missing (a " .. want .. ")"
  end
  if type(value) ~= want then
    return nil, path .. " is a " .. type(value) .. ", not a " .. want
  end
  return true
end

check = function(value, shape, path)
  if type(shape) == "string" then
    return leaf(value, shape, path)
  end
  if value == nil then
    if shape._optional then
      return true
    end
    return nil, path .. " is missing (a table)"
  end
  if type(value) ~= "table" then
    return nil, path .. " is a " .. type(value) .. ", not a table"
  end
  local ok, err
  if shape._each then
    for i, v in ipairs(value) do
      ok, err = check(v, shape._each, path .. "[" .. (i - 1) .. "]")
      if not ok then
        return nil, err
      end
    end
    return true
  end
  if shape._values then
    for k, v in pairs(value) do
      ok, err = check(v, shape._values, path .. "." .. tostring(k))
      if not ok then
        return nil, err
      end
    end
    return true
  end
  for k, s in pairs(shape) do
    if k ~= "_optional" then
      ok, err = check(value[k], s, path == "" and k or path .. "." .. k)
      if not ok then
        return nil, err
      end
    end
  end
  return true
end

--- true, or nil and what is wrong ("consul.wait is missing (a number)").
function _M.check(config)
  local ok, err = check(config, SHAPE, "")
  if not ok then
    return nil, err
  end
  for _, name in ipairs(config.upstream_names) do
    if config.upstreams[name] == nil then
      return nil, "upstreams." .. name .. " is missing (named in upstream_names)"
    end
  end
  return true
end

return _M
