module github.com/gluon-fs/gluon

go 1.26.8
