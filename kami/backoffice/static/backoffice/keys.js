/* The import job page: poll the job's JSON status every second, move the progress bar, and
   reload the page once the job has finished (the server renders the summary). Without
   JavaScript the page has a plain "Refresh" link. */
(function () {
  "use strict";
  var data = document.getElementById("kami-job-poll");
  if (!data) { return; }
  var poll = JSON.parse(data.textContent);
  var bar = document.getElementById("job-progress");
  var percent = document.getElementById("job-percent");
  var status = document.getElementById("job-status");
  var counts = {lines_done: "count-lines", imported: "count-imported", duplicates: "count-duplicates",
                invalid: "count-invalid"};

  function show(job) {
    bar.value = job.percent;
    bar.textContent = job.percent + "%";
    percent.textContent = job.percent + "%";
    Object.keys(counts).forEach(function (name) {
      var cell = document.getElementById(counts[name]);
      if (cell) { cell.textContent = job[name]; }
    });
    if (status.className !== "kami-status-" + job.status) {
      status.className = "kami-status-" + job.status;
      status.textContent = (poll.labels && poll.labels[job.status]) || job.status;
    }
  }

  function tick() {
    fetch(poll.url, {credentials: "same-origin", cache: "no-store", headers: {"Accept": "application/json"}})
      .then(function (response) {
        if (!response.ok) { throw new Error("status " + response.status); }
        return response.json();
      })
      .then(function (job) {
        show(job);
        if (job.status === "done" || job.status === "failed") {
          window.location.reload();
        } else {
          window.setTimeout(tick, poll.every_ms);
        }
      })
      .catch(function () { window.setTimeout(tick, poll.every_ms * 5); });
  }

  window.setTimeout(tick, poll.every_ms);
}());
