-- gen_lb.sys: the few POSIX calls the runtime needs, through LuaJIT's FFI
-- (Linux). Each declaration is made on its own and a clash with another
-- module's identical declaration is ignored, so other modules may declare the
-- same functions.
--
-- Owns the FFI declarations it makes; touches only the paths and pids it is given.
local ffi = require "ffi"

local C = ffi.C
local ffi_errno = ffi.errno
local ffi_string = ffi.string
local pcall = pcall
local tonumber = tonumber
local type = type

local _M = { _VERSION = "0.1.0" }

local DECLS = {
  "int kill(int pid, int sig);",
  "unsigned int geteuid(void);",
  [[struct passwd {
      char *pw_name; char *pw_passwd; unsigned int pw_uid; unsigned int pw_gid;
      char *pw_gecos; char *pw_dir; char *pw_shell;
    };]],
  "struct passwd *getpwnam(const char *name);",
  "int chown(const char *path, unsigned int owner, unsigned int group);",
  "int mkdir(const char *path, unsigned int mode);",
  "int open(const char *path, int flags, ...);",
  "long write(int fd, const void *buf, unsigned long count);",
  "int fsync(int fd);",
  "int close(int fd);",
  "int unlink(const char *path);",
  "char *strerror(int errnum);",
  "char *getcwd(char *buf, size_t size);",
  "char *realpath(const char *path, char *resolved_path);",
}
for _, decl in ipairs(DECLS) do
  pcall(ffi.cdef, decl)
end

-- Linux values (the same on x86_64 and aarch64).
local ESRCH, ENOENT, EEXIST, EINTR = 3, 2, 17, 4
local PATH_MAX = 4096
local O_WRONLY, O_RDONLY, O_CREAT, O_TRUNC, O_CLOEXEC = 1, 0, 64, 512, 524288

local function strerror(errno)
  return ffi_string(C.strerror(errno))
end
_M.strerror = strerror

--- true unless the process certainly does not exist (EPERM means it does).
function _M.process_alive(pid)
  pid = tonumber(pid)
  if not pid or pid <= 0 then
    return false
  end
  if C.kill(pid, 0) == 0 then
    return true
  end
  return ffi_errno() ~= ESRCH
end

function _M.is_root()
  return C.geteuid() == 0
end

--- uid, gid of a user name; nil, err when there is no such user.
function _M.user_ids(name)
  local pw = C.getpwnam(name)
  if pw == nil then
    return nil, "no such user " .. name
  end
  return tonumber(pw.pw_uid), tonumber(pw.pw_gid)
end

function _M.chown(path, uid, gid)
  if C.chown(path, uid, gid) ~= 0 then
    return nil, strerror(ffi_errno())
  end
  return true
end

--- The process's working directory, or nil, err.
function _M.getcwd()
  local buf = ffi.new("char[?]", PATH_MAX)
  if C.getcwd(buf, PATH_MAX) == nil then
    return nil, strerror(ffi_errno())
  end
  return ffi_string(buf)
end

--- realpath(3): the path with symlinks, "." and ".." resolved; nil, err, errno
--- when a component does not exist (or cannot be searched).
local function realpath(path)
  local buf = ffi.new("char[?]", PATH_MAX)
  if C.realpath(path, buf) == nil then
    local errno = ffi_errno()
    return nil, strerror(errno), errno
  end
  return ffi_string(buf)
end
_M.realpath = realpath

--- An absolute path as the kernel would walk it, whether or not it exists:
--- every existing component is resolved (symlinks, ".."), the part below the
--- deepest existing directory, which mkdir_p would create as plain
--- directories, lexically. nil, err when a component cannot be searched.
function _M.resolve(path)
  if path:sub(1, 1) ~= "/" then
    error("sys.resolve: an absolute path is needed, got " .. path, 2)
  end
  local cur, exists = "/", true
  for part in path:gmatch("[^/]+") do
    if exists then
      local r, err, errno = realpath((cur == "/" and "" or cur) .. "/" .. part)
      if r then
        cur = r
      elseif errno == ENOENT then
        exists = false
      else
        return nil, err
      end
    end
    if not exists then
      if part == ".." then
        cur = cur:match("^(.*)/[^/]*$")
        if cur == "" then
          cur = "/"
        end
      elseif part ~= "." then
        cur = (cur == "/" and "" or cur) .. "/" .. part
      end
    end
  end
  return cur
end

--- mkdir -p of an absolute path; returns true, created (whether the last
--- component was made), or nil, err. (A relative path would be made from /:
--- callers resolve paths first.)
function _M.mkdir_p(path, mode)
  if path:sub(1, 1) ~= "/" then
    error("sys.mkdir_p: an absolute path is needed, got " .. path, 2)
  end
  local created = false
  local prefix = ""
  for part in path:gmatch("[^/]+") do
    prefix = prefix .. "/" .. part
    if C.mkdir(prefix, mode or 493) == 0 then
      created = true
    else
      local errno = ffi_errno()
      if errno ~= EEXIST then
        return nil, "mkdir " .. prefix .. ": " .. strerror(errno)
      end
      created = false
    end
  end
  return true, created
end

--- Write `data` to `path` so that readers see the old or the new content,
--- never a part: temp file in the same directory, fsync, rename, fsync dir.
function _M.write_atomic(path, data, tmp_suffix)
  if type(data) ~= "string" then
    error("write_atomic: data must be a string", 2)
  end
  local tmp = path .. ".tmp." .. (tmp_suffix or "0")
  local fd = C.open(tmp, O_WRONLY + O_CREAT + O_TRUNC + O_CLOEXEC, ffi.new("int", 420))
  if fd < 0 then
    return nil, "open " .. tmp .. ": " .. strerror(ffi_errno())
  end
  local buf = ffi.cast("const char *", data)
  local left, off = #data, 0
  while left > 0 do
    local n = tonumber(C.write(fd, buf + off, left))
    if n < 0 then
      local errno = ffi_errno()
      if errno ~= EINTR then
        C.close(fd)
        C.unlink(tmp)
        return nil, "write " .. tmp .. ": " .. strerror(errno)
      end
    else
      left, off = left - n, off + n
    end
  end
  if C.fsync(fd) ~= 0 then
    local err = strerror(ffi_errno())
    C.close(fd)
    C.unlink(tmp)
    return nil, "fsync " .. tmp .. ": " .. err
  end
  C.close(fd)
  local ok, err = os.rename(tmp, path)
  if not ok then
    C.unlink(tmp)
    return nil, "rename to " .. path .. ": " .. tostring(err)
  end
  -- Make the rename itself durable; a failure here loses nothing already written.
  local dir = path:match("^(.*)/[^/]*$")
  if dir and dir ~= "" then
    local dfd = C.open(dir, O_RDONLY + O_CLOEXEC)
    if dfd >= 0 then
      C.fsync(dfd)
      C.close(dfd)
    end
  end
  return true
end

return _M
