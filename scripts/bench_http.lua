-- wrk script for scripts/bench_http.py (wrk 4.x, LuaJIT). Arguments after `--`:
--   upload TOKEN PATIENTS_FILE CONTENT_FILE   POST /records, a 4 KiB multipart upload per
--       request (fields patient, category, content_type, file); the patient rotates over
--       the addresses in PATIENTS_FILE (one a line), the content is CONTENT_FILE's bytes with
--       its last 16 bytes made unique per request.
--   batch TOKEN PATIENTS_FILE CONTENT_FILE K  POST /records/batch, K records per request: a
--       JSON `manifest` part listing {part, patient, category, content_type} for r0..r(K-1)
--       and one file part per entry; patients rotate and contents are made unique per
--       record as for upload.
--   read TOKEN PATH                            GET PATH (a record's content) with the session.
-- Counts non-2xx answers per thread; done() prints one line `WRK_RESULT {json}`.

local threads = {}
local thread_no = 0

function setup(thread)
  thread_no = thread_no + 1
  thread:set("thread_no", thread_no)
  table.insert(threads, thread)
end

local mode, token, path
local patients = {}
local content_head
local batch_records = 1
local boundary = "----emrbench7d1f9a3c5e2b4086"
local sent = 0
non2xx = 0
statuses = {}

local function read_file(name)
  local f = assert(io.open(name, "rb"))
  local data = f:read("*a")
  f:close()
  return data
end

function init(args)
  mode, token = args[1], args[2]
  if mode == "upload" or mode == "batch" then
    for line in io.lines(args[3]) do
      if #line > 0 then table.insert(patients, line) end
    end
    local content = read_file(args[4])
    content_head = string.sub(content, 1, #content - 16)
    path = "/records"
    if mode == "batch" then
      batch_records = assert(tonumber(args[5]), "batch: K records per request")
      path = "/records/batch"
    end
  else
    path = args[3]
  end
end

local function field(name, value)
  return "--" .. boundary .. "\r\nContent-Disposition: form-data; name=\"" .. name
    .. "\"\r\n\r\n" .. value .. "\r\n"
end

-- One request of K records: the manifest part (JSON text, as node/client.py sends it) and
-- K file parts named r0..r(K-1). Built with a table: K concatenations of 4 KiB would copy
-- the body K times.
local function batch_body()
  local entries, files = {}, {}
  for i = 0, batch_records - 1 do
    local part = "r" .. i
    local patient = patients[((sent * batch_records + i) % #patients) + 1]
    entries[#entries + 1] = string.format(
      "{\"part\": \"%s\", \"patient\": \"%s\", \"category\": \"lab\", "
        .. "\"content_type\": \"application/octet-stream\"}", part, patient)
    files[#files + 1] = "--" .. boundary .. "\r\nContent-Disposition: form-data; name=\""
      .. part .. "\"; filename=\"" .. part
      .. "\"\r\nContent-Type: application/octet-stream\r\n\r\n"
    files[#files + 1] = content_head
    files[#files + 1] = string.format("%04d%08d%04d", thread_no, sent % 100000000, i) .. "\r\n"
  end
  return "--" .. boundary .. "\r\nContent-Disposition: form-data; name=\"manifest\"\r\n"
    .. "Content-Type: application/json\r\n\r\n[" .. table.concat(entries, ", ") .. "]\r\n"
    .. table.concat(files) .. "--" .. boundary .. "--\r\n"
end

function request()
  sent = sent + 1
  local headers = { ["Authorization"] = "Bearer " .. token }
  if mode == "read" then
    return wrk.format("GET", path, headers)
  end
  headers["Content-Type"] = "multipart/form-data; boundary=" .. boundary
  if mode == "batch" then
    return wrk.format("POST", path, headers, batch_body())
  end
  local patient = patients[(sent % #patients) + 1]
  local unique = string.format("%04d%012d", thread_no, sent)
  local body = field("patient", patient) .. field("category", "lab")
    .. field("content_type", "application/octet-stream")
    .. "--" .. boundary .. "\r\nContent-Disposition: form-data; name=\"file\"; "
    .. "filename=\"record\"\r\nContent-Type: application/octet-stream\r\n\r\n"
    .. content_head .. unique .. "\r\n--" .. boundary .. "--\r\n"
  return wrk.format("POST", path, headers, body)
end

function response(status, headers, body)
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
    statuses[status] = (statuses[status] or 0) + 1
  end
end

function done(summary, latency, requests)
  local bad = 0
  local by_status = {}
  for _, thread in ipairs(threads) do
    bad = bad + (thread:get("non2xx") or 0)
    local s = thread:get("statuses")
    if s then
      for code, n in pairs(s) do
        by_status[code] = (by_status[code] or 0) + n
      end
    end
  end
  local codes = {}
  for code, n in pairs(by_status) do
    table.insert(codes, string.format("\"%d\": %d", code, n))
  end
  local e = summary.errors
  io.write(string.format(
    "WRK_RESULT {\"requests\": %d, \"duration_us\": %d, \"bytes\": %d, \"non2xx\": %d, "
      .. "\"statuses\": {%s}, \"connect_errors\": %d, \"read_errors\": %d, "
      .. "\"write_errors\": %d, \"timeouts\": %d, \"p50_us\": %d, \"p95_us\": %d, "
      .. "\"p99_us\": %d, \"max_us\": %d, \"mean_us\": %d}\n",
    summary.requests, summary.duration, summary.bytes, bad, table.concat(codes, ", "),
    e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99),
    latency.max, latency.mean))
end
