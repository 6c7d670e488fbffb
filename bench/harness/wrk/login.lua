-- POST /admin/login as the admin of $BENCH_ORG (bcrypt at the cost its hash was made with).
dofile(os.getenv("BENCH_WRK_DIR") .. "/common.lua")
wrk.method = "POST"
wrk.path = "/admin/login"
wrk.headers["Content-Type"] = "application/json"
wrk.body = string.format('{"email":"admin@%s.example","password":"correct-horse-battery"}',
  os.getenv("BENCH_ORG"))
