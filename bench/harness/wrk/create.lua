-- POST /org/create with a name no request has used: $BENCH_NONCE, the
-- thread's number and a counter.
dofile(os.getenv("BENCH_WRK_DIR") .. "/common.lua")
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
local n = 0
function request()
  n = n + 1
  local name = string.format("wrk-%s-%d-%d", os.getenv("BENCH_NONCE"), tid, n)
  local body = string.format(
    '{"organization_name":"%s","email":"admin@%s.example","password":"correct-horse-battery"}',
    name, name)
  return wrk.format("POST", "/org/create", { ["Content-Type"] = "application/json" }, body)
end
