<?php
// A request that takes SECONDS (default 30): something in flight during a stop. It says
// "sleeping" first, unbuffered, so a client knows the request has begun.
header('Content-Type: text/plain');
header('X-Accel-Buffering: no');
$seconds = isset($_GET['seconds']) ? (int) $_GET['seconds'] : 30;
// Debian's php.ini buffers 4 KiB of output (output_buffering): that buffer goes first.
while (ob_get_level() > 0) {
    ob_end_flush();
}
echo "sleeping\n";
flush();
sleep($seconds);
printf("slept %d s in worker %d\n", $seconds, getmypid());
