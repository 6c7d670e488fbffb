-- GET /org/get?organization_name=$BENCH_ORG
dofile(os.getenv("BENCH_WRK_DIR") .. "/common.lua")
wrk.method = "GET"
wrk.path = "/org/get?organization_name=" .. os.getenv("BENCH_ORG")
