--[[
  Gives a lease back, only if this holder still has it (it may have expired and gone to another process).

  Input:
    KEYS[1] lease key
    ARGV[1] holder id

  Output:
    1 when the lease was released, else 0
]]
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
