<?php
// php_workload.php - PHP under kalloc (php.sh).  php loads its extensions
// with dlopen(RTLD_DEEPBIND), so their malloc calls bind to glibc's
// allocator unless kalloc rebinds them: every preloaded allocator that
// does not crashes here.  Deterministic output only.
$a = [];
for ($i = 0; $i < 200000; $i++) {
    $a["k$i"] = str_repeat(chr(65 + $i % 26), $i % 300);
}
echo count($a), " ", md5(serialize($a)), "\n";
$j = json_encode(array_slice($a, 0, 2000));
echo strlen($j), " ", md5($j), " ", count(json_decode($j, true)), "\n";
echo md5(implode(",", array_map(fn($x) => strrev($x), array_slice($a, 0, 50000)))), "\n";
$s = "";
for ($i = 0; $i < 100000; $i++) {
    $s .= sprintf("%05d;", $i);
}
echo md5($s), " ", hash('sha256', $s), "\n";
echo preg_replace_callback('/\d+/', fn($m) => $m[0] * 2, "a1 b22 c333"), "\n";
echo count(preg_split('/;/', $s, -1, PREG_SPLIT_NO_EMPTY)), "\n";
echo md5(gzuncompress(gzcompress($s))), "\n";
$words = explode(";", $s);
shuffle($words);   // seeded below: mt_srand
mt_srand(42);
shuffle($words);
sort($words, SORT_STRING);
echo md5(implode(" ", $words)), "\n";
class Node { public $next; public $payload; function __construct($p) { $this->payload = $p; } }
for ($round = 0; $round < 20; $round++) {
    $first = $prev = new Node(str_repeat("n", $round));
    for ($i = 0; $i < 5000; $i++) {
        $n = new Node([$i, "x$i"]);
        $prev->next = $n;
        $prev = $n;
    }
    $prev->next = $first;   // a cycle for the collector
    unset($first, $prev, $n);
}
echo gc_collect_cycles() >= 0 ? "gc ok\n" : "gc bad\n";
$tok = token_get_all(file_get_contents(__FILE__));
echo count($tok) > 100 ? "tokens ok\n" : "tokens bad\n";
echo iconv("UTF-8", "ISO-8859-1//TRANSLIT", "caf\u{e9}") === "caf\xe9" ? "iconv ok\n" : "iconv bad\n";
echo ctype_digit("12345") ? "ctype ok\n" : "ctype bad\n";
$d = new DateTime("2026-01-02 03:04:05", new DateTimeZone("UTC"));
echo $d->format(DATE_ATOM), "\n";
echo bin2hex(sodium_crypto_generichash("kalloc")), "\n";
unset($a, $s, $words);
echo "done\n";
