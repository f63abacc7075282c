<?php
// Which php-fpm served the request: the worker's pid and its master's.
header('Content-Type: text/plain');
printf("php-fpm worker %d of master %d\n", getmypid(), posix_getppid());
