// Method calls answered by a job (job_queue.hpp): the call is parked while
// the job runs, and answered on the loop when it ends, so a load never holds
// up the bus. Calls that change the same kernel state queue behind it.
#pragma once

#include <systemd/sd-bus.h>

#include <functional>

#include "job_queue.hpp"
#include "khod/base/errc.hpp"
#include "khod/base/result.hpp"

namespace khod {

using CallOutcome = Result<void, Failure>;
// Answers call as a method handler would: >= 0 once it has replied, negative
// (with error set, or an errno) for the error to send.
using CallAnswer = std::function<int(sd_bus_message* call, sd_bus_error* error)>;

// Runs answer on the loop when every job queued before it has ended.
// Returns what the handler returns: 1 (parked), or the refusal when too many
// calls wait already.
int answer_in_turn(JobQueue& jobs, sd_bus_message* call, sd_bus_error* error, CallAnswer answer);

// Runs op off the loop (state lock held, see job_queue.hpp), then reply with
// its outcome on the loop. reply answers as CallAnswer does.
int answer_with_job(JobQueue& jobs, sd_bus_message* call, sd_bus_error* error,
                    std::function<CallOutcome()> op,
                    std::function<int(sd_bus_message*, sd_bus_error*, const CallOutcome&)> reply);

}  // namespace khod
