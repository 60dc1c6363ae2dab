#!/bin/sh
# Neutron's database, made at image build time (natively: 30 s, against minutes
# under TCG). MariaDB listens on its socket only, so nothing of the build host's
# network is touched. The connection string is the one the harness's neutron.conf
# uses.
set -eu
install -d -o mysql -g mysql /run/mysqld
mariadbd --user=mysql --skip-networking --socket=/run/mysqld/mysqld.sock &
i=0
until mariadb-admin --socket=/run/mysqld/mysqld.sock ping >/dev/null 2>&1; do
  i=$((i + 1)); [ "$i" -lt 120 ] || { echo "MariaDB did not answer within 60 s" >&2; exit 1; }
  sleep 0.5
done
mariadb --socket=/run/mysqld/mysqld.sock -e "CREATE DATABASE neutron CHARACTER SET utf8mb4; CREATE USER 'neutron'@'localhost' IDENTIFIED BY 'neutron'; GRANT ALL PRIVILEGES ON neutron.* TO 'neutron'@'localhost';"
conf=$(mktemp)
printf '[database]\nconnection = mysql+pymysql://neutron:neutron@localhost/neutron?unix_socket=/run/mysqld/mysqld.sock&charset=utf8mb4\n' > "$conf"
neutron-db-manage --config-file "$conf" upgrade heads
rm -f "$conf"
mariadb-admin --socket=/run/mysqld/mysqld.sock shutdown
wait
