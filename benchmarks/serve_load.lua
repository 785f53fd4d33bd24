-- wrk script for benchmarks/bench_serve.py: POST /v1/transactions with realistic bodies.
--
-- wrk ... -s serve_load.lua URL -- BODIES KEY_PREFIX API_KEY ACK_PREFIX
--   BODIES      file of JSON bodies, one per line, each with the placeholder @KEY@ where the
--               idempotency key goes (real user/account/merchant/device tuples, written by
--               bench_serve.py from the demo dataset)
--   KEY_PREFIX  every request gets the unique key KEY_PREFIX-<thread>-<n>
--   API_KEY     sent as "Authorization: Bearer API_KEY"
--   ACK_PREFIX  each thread appends the idempotency key of every 2xx answer to
--               ACK_PREFIX-<thread>.txt, so the benchmark can check that every acknowledged
--               decision is in the database
-- done() prints one line "WRKJSON {...}" with counts and latency percentiles (microseconds).

local thread_count = 0
local threads = {}

function setup(thread)
  thread_count = thread_count + 1
  thread:set("tid", thread_count)
  table.insert(threads, thread)
end

local pre, suf, nbodies, index, seq, prefix, headers, ack
ok, bad, first_error = 0, 0, ""

function init(args)
  local path, key_prefix, api_key, ack_prefix = args[1], args[2], args[3], args[4]
  pre, suf = {}, {}
  for line in io.lines(path) do
    local s, e = string.find(line, "@KEY@", 1, true)
    if s then
      table.insert(pre, string.sub(line, 1, s - 1))
      table.insert(suf, string.sub(line, e + 1))
    end
  end
  nbodies = #pre
  if nbodies == 0 then
    error("no bodies with @KEY@ in " .. path)
  end
  index = (tid * 7919) % nbodies -- threads start at different tuples
  seq = 0
  prefix = key_prefix .. "-" .. tid .. "-"
  headers = { ["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. api_key }
  ack = assert(io.open(ack_prefix .. "-" .. tid .. ".txt", "w"))
  ack:setvbuf("line")
end

function request()
  seq = seq + 1
  index = index % nbodies + 1
  return wrk.format("POST", "/v1/transactions", headers, pre[index] .. prefix .. seq .. suf[index])
end

function response(status, hdrs, body)
  if status >= 200 and status < 300 then
    ok = ok + 1
    local key = string.match(body, '"idempotency_key":"([^"]*)"')
    ack:write(key or "?", "\n")
  else
    bad = bad + 1
    if first_error == "" then
      first_error = status .. " " .. string.sub(body or "", 1, 300)
    end
  end
end

local function esc(s)
  return (string.gsub(s, '[%c"\\]', function(c)
    return string.format("\\u%04x", string.byte(c))
  end))
end

function done(summary, latency, requests)
  local ok_total, bad_total, err = 0, 0, ""
  for _, t in ipairs(threads) do
    ok_total = ok_total + (t:get("ok") or 0)
    bad_total = bad_total + (t:get("bad") or 0)
    local e = t:get("first_error") or ""
    if err == "" then
      err = e
    end
  end
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"ok":%d,"non2xx":%d,"connect_errors":%d,' ..
      '"read_errors":%d,"write_errors":%d,"status_errors":%d,"timeouts":%d,' ..
      '"lat_mean_us":%.1f,"lat_max_us":%d,"p50_us":%d,"p90_us":%d,"p95_us":%d,"p99_us":%d,' ..
      '"p999_us":%d,"first_error":"%s"}\n',
    summary.requests, summary.duration, ok_total, bad_total, e.connect, e.read, e.write, e.status,
    e.timeout, latency.mean, latency.max, latency:percentile(50), latency:percentile(90),
    latency:percentile(95), latency:percentile(99), latency:percentile(99.9), esc(err)))
end
