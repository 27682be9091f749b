#!/usr/bin/perl
# Hash/array/string churn and a regex workload for tests/programs/perl.sh.
# Prints only deterministic results (hash keys are always sorted).
use strict;
use warnings FATAL => "all";
use Digest::MD5 qw(md5_hex);

# Hash churn: insert, delete, reinsert, nested structures.
my %h;
for my $i (1 .. 400_000) {
    $h{"key$i"} = "value" x ($i % 7) . $i;
}
delete $h{"key$_"} for grep { $_ % 3 == 0 } 1 .. 400_000;
$h{"re$_"} = [$_, "x" x ($_ % 50)] for 1 .. 100_000;
my $klen = 0;
$klen += length($_) for keys %h;
printf "hash: %d keys, key bytes %d, digest %s\n", scalar(keys %h), $klen,
    md5_hex(join ",", (sort keys %h)[0 .. 999]);
my %nested;
for my $i (1 .. 50_000) {
    push @{ $nested{ $i % 101 }{ $i % 7 } }, { id => $i, name => "n$i" };
}
my $cnt = 0;
for my $a (sort { $a <=> $b } keys %nested) {
    for my $b (sort keys %{ $nested{$a} }) { $cnt += @{ $nested{$a}{$b} } }
}
print "nested: $cnt\n";
undef %h;
undef %nested;

# Array churn: push/pop/shift/splice/sort/map/grep.
my @a = map { $_ * 7 % 100_003 } 1 .. 500_000;
my @sorted = sort { $a <=> $b } @a;
my @strs = sort map { sprintf "%08x", $_ * 2654435761 % 4294967296 } 1 .. 200_000;
splice(@a, 1000, 100_000, map { -$_ } 1 .. 50_000);
shift @a for 1 .. 1000;
pop @a for 1 .. 1000;
my $sum = 0;
$sum += $_ for @a;
printf "arrays: %d %d %d %s %s sum %d\n", scalar(@a), $sorted[0], $sorted[-1], $strs[0], $strs[-1], $sum;
undef @a;
undef @sorted;

# String churn: growth by append, substr, repeat, join/split, sprintf.
my $s = "";
$s .= chr(97 + $_ % 26) x ($_ % 13) for 1 .. 200_000;
my @parts = split /q+/, $s;
my $joined = join "|", @parts;
substr($joined, 100, 1000) = "REPLACED" x 100;
my $rev = reverse $joined;
printf "strings: %d %d %d %s\n", length($s), scalar(@parts), length($joined), md5_hex($rev);

# Regex workload: matches with captures, global substitution, tr, case folding.
my $text = join "\n", map {
    sprintf "%05d user%d\@host%d.example.org GET /path/%d/item?id=%d %s", $_, $_ % 977, $_ % 13,
        $_ % 50, $_ * 3, ($_ % 5 ? "OK" : "ERROR")
} 1 .. 100_000;
my (%byhost, $errors);
while ($text =~ /^(\d+) (\w+)\@(host\d+)\.example\.org GET (\S+) (OK|ERROR)$/mg) {
    $byhost{$3}++;
    $errors++ if $5 eq "ERROR";
}
printf "regex: hosts %s errors %d\n", join(",", map { "$_=$byhost{$_}" } sort keys %byhost), $errors;
(my $t2 = $text) =~ s/user(\d+)/"U" . ($1 * 2)/ge;
$t2 =~ s/(\d+)\.example/uc("ex$1")/ge;
(my $t3 = $t2) =~ tr/a-z/A-Z/;
my @ids = $t2 =~ /id=(\d+)/g;
my $idsum = 0;
$idsum += $_ for @ids;
printf "subst: %d %s ids %d sum %d\n", length($t2), md5_hex($t3), scalar(@ids), $idsum;
my %words;
$words{ lc $1 }++ while $t3 =~ /\b([A-Z]{3,})\b/g;
printf "words: %s\n", join " ", map { "$_:$words{$_}" } sort keys %words;
print "done\n";
