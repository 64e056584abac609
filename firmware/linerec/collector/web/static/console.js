// Clicking the waveform seeks the player to that point (no inline script: CSP allows 'self').
document.addEventListener("DOMContentLoaded", () => {
  const image = document.getElementById("waveform");
  const player = document.getElementById("player");
  if (!image || !player) return;
  image.addEventListener("click", (event) => {
    if (!Number.isFinite(player.duration)) return;
    const box = image.getBoundingClientRect();
    player.currentTime = ((event.clientX - box.left) / box.width) * player.duration;
    player.play();
  });
});
