-- wrk script: PUT a 100-byte value to one of 100,000 keys at random, as a REST write load.
--   wrk -t2 -c16 -d10s -s tools/rest-put.lua http://127.0.0.1:PORT
wrk.method = "PUT"
wrk.body = string.rep("v", 100)
math.randomseed(os.time())
request = function()
  return wrk.format(nil, "/v1/ns/default/keys/k" .. math.random(100000))
end
