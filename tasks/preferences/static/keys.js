// Keyboard shortcuts for the comparison page: 1 or Left arrow, 2 or Right arrow, 3 or T,
// 4 or B press the matching button. Keys typed into the comment box stay text.
document.addEventListener("keydown", function (event) {
  if (event.target.tagName === "TEXTAREA" || event.target.tagName === "INPUT") return;
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  var choice = {
    "1": "left", "ArrowLeft": "left",
    "2": "right", "ArrowRight": "right",
    "3": "tie", "t": "tie", "T": "tie",
    "4": "both_bad", "b": "both_bad", "B": "both_bad"
  }[event.key];
  if (!choice) return;
  var button = document.querySelector('#vote button[value="' + choice + '"]');
  if (button && !button.disabled) {
    event.preventDefault();
    document.querySelectorAll("#vote button").forEach(function (b) { b.disabled = true; });
    // A disabled button is not submitted: send its choice along explicitly.
    var form = document.getElementById("vote");
    var field = document.createElement("input");
    field.type = "hidden"; field.name = "choice"; field.value = choice;
    form.appendChild(field);
    form.submit();
  }
});
