-- Argo CD health check for gonka.ai/v1alpha1 InferenceNode (one ML node of a Gonka host, managed by
-- gonka-operator). Lua 5.1 with the base and table libraries only, so it runs from argocd-cm without
-- resource.customizations.useOpenLibs.gonka.ai_InferenceNode.
--
-- Healthy      Ready=True for the current generation (workload available, entry registered).
-- Degraded     Ready=False for a reason waiting will not fix: the scheduler cannot place the ML pod
--              (InsufficientGPU, Unschedulable), the admin API rejects the node or its id is taken
--              (Rejected, IdConflict), the admin API cannot be reached, an apply failed, the
--              NetworkNode does not exist, the network node reports the ML node FAILED (NodeFailed), the
--              download of the model into the HF cache failed for good (PreloadFailed).
-- Progressing  no status yet, a generation the operator has not observed, Ready=Unknown, or
--              Ready=False while waiting (HF cache downloading, ML pod starting, NetworkNode still
--              syncing its chain), or UpdatePending=True: a change that restarts the serving ML pod is
--              held while the network node reports a PoC window (PoCInProgress) or another ML node of
--              the host restarts (WaitingForSibling); the old pod keeps serving, the message says when
--              the change goes. UpdatePending=False (UpToDate) changes nothing.
-- Deleting     Progressing while the finalizer drains the node (Registered=True reason Draining: the
--              entry is disabled and kept while the network node still schedules it) and then removes
--              the entry from the registry (deletionMessage).
local failures = {
  Rejected = true, IdConflict = true, InsufficientGPU = true, Unschedulable = true, ApplyFailed = true,
  AdminUnreachable = true, NetworkNodeNotFound = true, NodeFailed = true, PreloadFailed = true,
}

local function condition(status, ctype)
  for _, c in ipairs(status.conditions or {}) do
    if c.type == ctype then
      return c
    end
  end
  return nil
end

local function text(c)
  if c.message ~= nil and c.message ~= "" then
    return c.reason .. ": " .. c.message
  end
  return c.reason
end

local hs = {status = "Progressing", message = "Waiting for the operator to reconcile the InferenceNode"}
local status = obj.status or {}
local ready = condition(status, "Ready")

if obj.metadata.deletionTimestamp ~= nil then
  -- the finalizer gonka.ai/registry-cleanup goes once the entry is out of the registry
  local deleting = "Removing " .. (status.nodeId or obj.metadata.name) .. " from the admin registry before deletion"
  local registered = condition(status, "Registered")
  if registered ~= nil and registered.reason == "Draining" then
    deleting = "Draining " .. (status.nodeId or obj.metadata.name) .. " before removing it from the admin registry"
    if registered.message ~= nil and registered.message ~= "" then
      deleting = deleting .. ": " .. registered.message
    end
  elseif ready ~= nil and ready.reason == "DeregistrationPending" and ready.message ~= nil then
    deleting = deleting .. ": " .. ready.message
  end
  return {status = "Progressing", deletionMessage = deleting}
end

if obj.status == nil then
  return hs
end

local generation = obj.metadata.generation
if generation ~= nil and (status.observedGeneration == nil or status.observedGeneration < generation) then
  hs.message = "Waiting for the operator to observe generation " .. generation
  return hs
end

if ready == nil then
  return hs
end
local pending = condition(status, "UpdatePending")
if pending ~= nil and pending.status == "True" and not (ready.status == "False" and failures[ready.reason]) then
  -- a held change: the spec is observed but not applied to the ML pod yet
  hs.message = text({reason = pending.reason or "UpdatePending", message = pending.message})
  return hs
end
if ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message or "Ready"
  return hs
end
if ready.status ~= "False" then
  -- Unknown: the operator is waiting for something; its message says what
  if ready.message ~= nil and ready.message ~= "" then
    hs.message = ready.message
  end
  return hs
end
if failures[ready.reason] then
  hs.status = "Degraded"
end
hs.message = text({reason = ready.reason or "NotReady", message = ready.message})
return hs
