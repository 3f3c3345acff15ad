--[[
  Takes a lease that is free, or extends one this holder already has (compare-and-extend must be atomic: a
  GET then PEXPIRE could extend a lease another process took in between).

  Input:
    KEYS[1] lease key
    ARGV[1] holder id
    ARGV[2] lease duration (ms)

  Output:
    1 when ARGV[1] holds the lease after the call, else 0
]]
local holder = redis.call('GET', KEYS[1])
if holder == false then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
